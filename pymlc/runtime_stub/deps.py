"""What the runtime needs installed, as pip requirement strings.

The image recipe installs exactly these beside the model's own requirements. ``grpcio`` is pinned
to the version of ``grpcio-tools`` that compiles the stubs: the stubs refuse an older runtime.
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
    "pyarrow>=15",
)

BATCH_REQUIREMENTS: tuple[str, ...] = ("pyspark==4.3.0",)
