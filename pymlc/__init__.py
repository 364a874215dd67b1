"""pymlc: one declarative ``pyml.yaml`` compiled into everything a Python ML model needs to run
online (gRPC over a Unix socket) and offline (PySpark), provably the same model.

Model authors import the contract from here::

    from pymlc import DataFrameModel, TensorModel

This module imports only the runtime (never the compiler), so it works inside model images.
"""

from __future__ import annotations

from ._version import __version__
from .runtime_stub.contracts import DataFrameModel, TensorModel

__all__ = ["DataFrameModel", "TensorModel", "__version__"]
