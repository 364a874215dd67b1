"""The per-model ``.proto``: its text is rendered once, in lowering (see ``proto_text``)."""

from __future__ import annotations

from ..ir import BuildPlan
from .base import Artifact

__all__ = ["emit_proto"]


def emit_proto(plan: BuildPlan) -> list[Artifact]:
    return [Artifact(plan.names.proto_path, plan.proto)]
