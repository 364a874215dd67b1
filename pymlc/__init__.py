"""pymlc: one declarative ``pyml.yaml`` compiled into everything a Python ML model needs to run
online (gRPC over a Unix socket) and offline (PySpark), provably the same model.

Model authors import the contract from here::

    from pymlc import DataFrameModel, TensorModel

Notebooks and scripts use the Python API (``pymlc.load``, see ``pymlc.api``) and the client of
a running server (``pymlc.Client``, see ``pymlc.client``). Importing this module loads only the
model contract (never the compiler, nor grpc), so it works inside model images; the API and
the client are imported on first use.
"""

from __future__ import annotations

import typing

from ._version import __version__
from .runtime_stub.contracts import DataFrameModel, TensorModel

if typing.TYPE_CHECKING:
    from .api import Model, load
    from .client import Client

__all__ = ["Client", "DataFrameModel", "Model", "TensorModel", "__version__", "load"]

_LAZY = {"Client": "client", "Model": "api", "load": "api"}


def __getattr__(name: str) -> typing.Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
