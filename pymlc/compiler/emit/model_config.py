"""``model.json``: the resolved contract the runtime reads (it cannot parse YAML or import the
compiler). It holds exactly what the server and the batch driver need: the entrypoint, the
inputs and outputs with their types and field numbers, and the serving and batch settings."""

from __future__ import annotations

from typing import Any

from ..ir import BuildPlan, FieldPlan
from .base import Artifact, header, render_json

__all__ = ["emit_model_config", "model_config"]

FORMAT = 1


def emit_model_config(plan: BuildPlan) -> list[Artifact]:
    return [Artifact(plan.layout.model_config, render_json(model_config(plan)))]


def model_config(plan: BuildPlan) -> dict[str, Any]:
    examples = plan.examples
    return {
        "$comment": header(plan),
        "format": FORMAT,
        "name": plan.name,
        "version": plan.version,
        "kind": plan.model.kind,
        "module": plan.model.module,
        "class": plan.model.class_name,
        "artifacts": plan.model.artifacts,
        "inputs": [_field(f) for f in plan.inputs.fields],
        "outputs": [_field(f) for f in plan.outputs.fields],
        "proto": {
            "package": plan.names.proto_package,
            "module": plan.names.module,
            "service": plan.names.service,
        },
        "serving": dict(plan.serving.__dict__),
        "batch": {**plan.batch.__dict__, "passthrough": list(plan.batch.passthrough)},
        "examples": dict(examples.__dict__) if examples else None,
    }


def _field(field: FieldPlan) -> dict[str, Any]:
    return {
        "name": field.name,
        "number": field.number,
        "type": field.type,
        "nullable": field.nullable,
        "shape": list(field.shape) if field.shape else None,
    }
