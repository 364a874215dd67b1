"""The pymlc runtime: runs inside model images and behind `pymlc serve` / `pymlc batch`.

Self-contained: it needs only the standard library, numpy, pandas, pyarrow, grpcio and protobuf
(pyspark only in the batch driver), never the compiler, and imports its own modules relatively so
it can be copied under any package name.
"""

from __future__ import annotations

from .contracts import DataFrameModel, TensorModel

__all__ = ["DataFrameModel", "TensorModel"]
