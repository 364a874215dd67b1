"""Python stubs of the per-model proto, compiled by the pinned grpcio-tools.

protoc runs in-process on a private temporary folder; the results come back as Artifacts and only
``write.py`` puts them in the output folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import Diagnostic, EmitError, Level
from ..ir import BuildPlan
from .base import Artifact

__all__ = ["emit_grpc_stubs"]

_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


def emit_grpc_stubs(plan: BuildPlan) -> list[Artifact]:
    from grpc_tools import protoc  # heavy import, only when stubs are emitted

    module = plan.names.module
    with tempfile.TemporaryDirectory(prefix="pymlc-protoc-") as tmp:
        folder = Path(tmp)
        (folder / f"{module}.proto").write_text(plan.proto, encoding="utf-8")
        status = protoc.main([
            "protoc", f"-I{folder}", f"--python_out={folder}", f"--pyi_out={folder}",
            f"--grpc_python_out={folder}", str(folder / f"{module}.proto"),
        ])
        if status != 0:
            raise EmitError([Diagnostic(plan.spec_file, (), None, Level.ERROR, "E501",
                                        f"protoc failed on {plan.names.proto_path}")])
        return [
            Artifact(module + suffix, (folder / (module + suffix)).read_text(encoding="utf-8"))
            for suffix in _SUFFIXES
        ]
