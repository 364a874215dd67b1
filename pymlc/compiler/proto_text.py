"""The per-model ``.proto``'s text: a typed ``Predict`` service whose messages mirror the spec.

Rendered once per compile, by lowering (``BuildPlan.proto``): the ``proto`` emitter writes it
and the ``grpc_stubs`` emitter compiles it.

Dataframe columns travel column-wise: one field per column, a ``<T>Column`` message whose
``values`` hold one value per row (so N rows decode to numpy without a per-row loop) and whose
``nulls`` are empty when nothing is null, else one flag per row. Every column has that shape,
nullable or not, and float32 travels as double: so making an input nullable, an output
non-nullable, or widening int32 -> int64 or float32 -> float64 keeps old clients' bytes valid
(the compatible changes of ``pymlc diff`` are compatible on the wire). Tensors are
``Tensor{shape, data}`` with ``data`` the raw little-endian row-major bytes: ``np.frombuffer``
decodes them without a copy, and dtypes protobuf lacks (float16, int8, uint8) need no widening
on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..runtime_stub.types import COLUMN_TYPES
from ..runtime_stub.wire import (
    BLOCK_FIELDS,
    MESSAGES,
    TENSOR_MESSAGE,
    block_field,
    block_message,
    block_number,
    block_numbers,
    block_of,
    column_message,
)
from .emit.base import header, render
from .ir import BuildPlan, FieldPlan, MessagePlan

__all__ = ["ENCODING", "render_proto"]

ENCODING = (
    "Wire encoding. Dataframe columns: one <T>Column field per column; `values` has one entry\n"
    "per row (any value where null) and `nulls` is empty or has one flag per row.\n"
    "date = days since 1970-01-01, timestamp = microseconds since the epoch (UTC),\n"
    "int8/int16 travel as int32 and float32 as double.\n"
    "Tensors: `shape` and `data`, the raw little-endian row-major bytes of the elements."
)

_TENSOR_WRAPPER: dict[str, object] = {
    "name": TENSOR_MESSAGE,
    "doc": "A tensor: its dimensions and the raw little-endian row-major bytes of its elements.",
    "fields": ("repeated int64 shape = 1;", "bytes data = 2;"),
}


@dataclass(frozen=True)
class _Field:
    comment: str
    type: str
    name: str
    number: int


def render_proto(plan: BuildPlan) -> str:
    request, response = MESSAGES
    messages = [
        *_messages(request, plan.inputs, plan.model.kind),
        *_messages(response, plan.outputs, plan.model.kind),
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
    scalars = sorted({COLUMN_TYPES[f.type].proto for f in fields})
    return [
        {
            "name": column_message(scalar),
            "doc": f"A column of {scalar}: one value per row; `nulls` empty, or a flag per row.",
            "fields": (f"repeated {scalar} values = 1;", "repeated bool nulls = 2;"),
        }
        for scalar in scalars
    ]


def _messages(name: str, message: MessagePlan, kind: str) -> list[dict[str, object]]:
    """The message, then each block of a wide one (see ``runtime_stub.wire``)."""
    numbers = [*(f.number for f in message.fields), *message.reserved_numbers]
    blocks = sorted({block_of(n) for n in numbers} - {0})
    top = _message(name, message, 0, kind)
    top["fields"] = [*top["fields"], *(_block_field(name, block) for block in blocks)]
    return [top, *(_message(block_message(name, block), message, block, kind)
                   for block in blocks)]


def _message(name: str, message: MessagePlan, block: int, kind: str) -> dict[str, Any]:
    return {
        "name": name,
        "fields": [_field(f, kind) for f in message.fields if block_of(f.number) == block],
        "reserved_numbers": [n for n in message.reserved_numbers if block_of(n) == block],
        # Names are reserved in the message itself: the lock, not protoc, prevents reuse.
        "reserved_names": message.reserved_names if block == 0 else (),
    }


def _block_field(name: str, block: int) -> _Field:
    numbers = block_numbers(block)
    comment = (f"fields numbered {numbers.start}..{numbers.stop - 1}: a wide message travels"
               f" in blocks of at most {BLOCK_FIELDS} fields")
    return _Field(comment, block_message(name, block), block_field(block),
                  block_number(block))


def _field(field: FieldPlan, kind: str) -> _Field:
    if kind == "tensor":
        dims = ", ".join(str(d) for d in field.shape)
        comment = f"{field.type} [{dims}]"
        type_ = TENSOR_MESSAGE
    else:
        comment = field.type + (", nullable" if field.nullable else "")
        type_ = column_message(COLUMN_TYPES[field.type].proto)
    if field.description:
        comment += f": {field.description}"
    return _Field(comment, type_, field.name, field.number)
