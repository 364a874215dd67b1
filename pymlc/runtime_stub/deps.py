"""What the runtime needs installed, as pip requirement strings.

The image recipe installs ``RUNTIME_REQUIREMENTS`` beside the model's own requirements in both
targets, and ``BATCH_REQUIREMENTS`` in the batch target only: the server never imports pyarrow
(only the batch driver and host-side Parquet reading do), and it would more than double what
the runtime adds to the serving image (bench/README.md, image). The host install
(``pyproject.toml``) has both. ``grpcio`` is pinned to the version of ``grpcio-tools`` that
compiles the stubs: the stubs refuse an older runtime.
"""

from __future__ import annotations

__all__ = ["BATCH_REQUIREMENTS", "GRPC_VERSION", "RUNTIME_REQUIREMENTS"]

GRPC_VERSION = "1.81.1"

RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    f"grpcio=={GRPC_VERSION}",
    f"grpcio-health-checking=={GRPC_VERSION}",
    f"grpcio-reflection=={GRPC_VERSION}",
    "numpy>=1.26",
    "pandas>=2.2,<3",
    "protobuf>=6.33.5,<7",
)

# Only the batch job needs Arrow (Spark's batches); the serving image stays without it.
BATCH_REQUIREMENTS: tuple[str, ...] = ("pyarrow>=15", "pyspark==4.3.0")
