"""The per-model ``.proto``: a typed ``Predict`` service whose messages mirror the spec.

Dataframe columns travel column-wise: one ``repeated`` field per column, each holding one value
per row, so a request of N rows is N values per field and decodes to numpy without a per-row
loop. A nullable column is a ``Nullable<T>`` message of ``values`` (a default where null) plus
``nulls`` (empty when nothing is null, else one flag per row). Tensors are ``Tensor{shape, data}``
with ``data`` the raw little-endian row-major bytes: ``np.frombuffer`` decodes them without a
copy, and dtypes protobuf lacks (float16, int8, uint8) need no widening on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...runtime_stub.types import COLUMN_TYPES
from ..ir import BuildPlan, FieldPlan, MessagePlan
from .base import Artifact, header, render

__all__ = ["ENCODING", "emit_proto", "render_proto"]

ENCODING = (
    "Wire encoding. Dataframe columns: one repeated field per column, one value per row;\n"
    "date = days since 1970-01-01, timestamp = microseconds since the epoch (UTC),\n"
    "int8/int16 travel as int32. A nullable column is Nullable<T>: `values` has one entry\n"
    "per row (any value where null) and `nulls` is empty or has one flag per row.\n"
    "Tensors: `shape` and `data`, the raw little-endian row-major bytes of the elements."
)

_TENSOR_WRAPPER: dict[str, object] = {
    "name": "Tensor",
    "doc": "A tensor: its dimensions and the raw little-endian row-major bytes of its elements.",
    "fields": ("repeated int64 shape = 1;", "bytes data = 2;"),
}


@dataclass(frozen=True)
class _Field:
    comment: str
    type: str
    name: str
    number: int


def emit_proto(plan: BuildPlan) -> list[Artifact]:
    return [Artifact(plan.names.proto_path, render_proto(plan))]


def render_proto(plan: BuildPlan) -> str:
    messages = [
        _message("PredictRequest", plan.inputs, plan.model.kind),
        _message("PredictResponse", plan.outputs, plan.model.kind),
    ]
    return render(
        "service.proto.jinja",
        header=header(plan),
        description=plan.description,
        encoding=ENCODING,
        package=plan.names.proto_package,
        wrappers=_wrappers(plan),
        messages=messages,
        service=plan.names.service,
    )


def _wrappers(plan: BuildPlan) -> list[dict[str, object]]:
    if plan.model.kind == "tensor":
        return [_TENSOR_WRAPPER]
    fields = [*plan.inputs.fields, *plan.outputs.fields]
    scalars = sorted({COLUMN_TYPES[f.type].proto for f in fields if f.nullable})
    return [
        {
            "name": _nullable_name(scalar),
            "doc": f"A nullable column of {scalar}.",
            "fields": (f"repeated {scalar} values = 1;", "repeated bool nulls = 2;"),
        }
        for scalar in scalars
    ]


def _nullable_name(scalar: str) -> str:
    return "Nullable" + scalar[0].upper() + scalar[1:]


def _message(name: str, message: MessagePlan, kind: str) -> dict[str, object]:
    return {
        "name": name,
        "fields": [_field(f, kind) for f in message.fields],
        "reserved_numbers": message.reserved_numbers,
        "reserved_names": message.reserved_names,
    }


def _field(field: FieldPlan, kind: str) -> _Field:
    if kind == "tensor":
        dims = ", ".join(str(d) for d in field.shape)
        comment = f"{field.type} [{dims}]"
        type_ = "Tensor"
    else:
        scalar = COLUMN_TYPES[field.type].proto
        comment = field.type + (", nullable" if field.nullable else "")
        type_ = _nullable_name(scalar) if field.nullable else f"repeated {scalar}"
    if field.description:
        comment += f": {field.description}"
    return _Field(comment, type_, field.name, field.number)
