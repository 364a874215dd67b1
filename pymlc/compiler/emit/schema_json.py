"""``schema.json``: JSON Schema (2020-12) of the model's requests and responses.

The root validates a request; ``#/$defs/response`` a response. A dataframe request is a list of
records (the JSON form `pymlc predict` reads); a tensor request maps each name to nested lists.
"""

from __future__ import annotations

from typing import Any

from ...runtime_stub.types import COLUMN_TYPES, TENSOR_DTYPES
from ..ir import BuildPlan, FieldPlan, MessagePlan
from .base import Artifact, header, render_json

__all__ = ["emit_schema_json", "message_schema"]

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def emit_schema_json(plan: BuildPlan) -> list[Artifact]:
    document = {
        "$schema": _DIALECT,
        "$comment": header(plan),
        "title": f"{plan.name} {plan.version}",
        "description": plan.description,
        "$defs": {
            "request": message_schema(plan.inputs, plan.model.kind),
            "response": message_schema(plan.outputs, plan.model.kind),
        },
        "$ref": "#/$defs/request",
    }
    return [Artifact("schema.json", render_json(document))]


def message_schema(message: MessagePlan, kind: str) -> dict[str, Any]:
    if kind == "tensor":
        return _object({f.name: _tensor(f) for f in message.fields}, message.names)
    record = _object({f.name: _column(f) for f in message.fields}, message.names)
    return {"type": "array", "items": record}


def _object(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _column(field: FieldPlan) -> dict[str, Any]:
    schema: dict[str, Any] = dict(COLUMN_TYPES[field.type].json)
    if field.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if field.description:
        schema["description"] = field.description
    return schema


def _tensor(field: FieldPlan) -> dict[str, Any]:
    schema: dict[str, Any] = dict(TENSOR_DTYPES[field.type].json)
    for dim in reversed(field.shape):
        schema = {"type": "array", "items": schema}
        if dim > 0:
            schema["minItems"] = schema["maxItems"] = dim
    if field.description:
        schema["description"] = field.description
    return schema
