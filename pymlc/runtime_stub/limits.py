"""How much work one request may ask of the server, derived from ``serving.max_message_bytes``.

gRPC refuses a message over ``max_message_bytes``, but a message under it can still cost far
more once decoded: a string or binary value takes 2-4 bytes on the wire and ~60-100 bytes as a
Python object, so a message of mostly short strings grows twenty-fold or more in the server's
memory, and millions of empty OIP BYTES elements keep it busy splitting them long after the
call's deadline (tests/adversarial/test_serving_limits.py). So a request may hold at most one
string or binary value per :data:`OBJECT_WIRE_BYTES` bytes of the limit (2,097,152 at the default
16 MiB), counted from the message's lengths and shapes before a single value is decoded, and
refused with RESOURCE_EXHAUSTED. Numbers and tensors need no such bound: their decoded size is
within a small factor of their wire size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .checks import ColumnSpec
from .wire import block_field

__all__ = ["OBJECT_WIRE_BYTES", "LimitError", "RequestLimits"]

OBJECT_WIRE_BYTES = 8


class LimitError(Exception):
    """A request asks for more work than the server's limits allow (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class RequestLimits:
    """The bounds a request is checked against before it is decoded.

    Attributes:
        max_objects: string, binary and BYTES values per request, all inputs together.
    """

    max_objects: int

    @classmethod
    def of(cls, max_message_bytes: int) -> RequestLimits:
        """The limits that go with ``serving.max_message_bytes``."""
        return cls(max(1, max_message_bytes // OBJECT_WIRE_BYTES))

    def check_typed(self, message: Any, specs: Sequence[ColumnSpec]) -> None:
        """Refuse a typed dataframe request with too many string/binary values.

        Raises:
            LimitError: the count is over :attr:`max_objects`.
        """
        counts = [(s.name, len(getattr(_holder(message, s), s.name).values)) for s in specs
                  if s.type.proto_numpy == "object"]
        self._check(counts)

    def check_oip(self, request: Any) -> None:
        """Refuse an OIP request with too many BYTES elements, as its shapes declare them.

        The raw BYTES decoder then splits no more elements than the shape declares.

        Raises:
            LimitError: the count is over :attr:`max_objects`.
        """
        raw = len(request.raw_input_contents)
        counts = [(t.name, _declared(t, raw)) for t in request.inputs if t.datatype == "BYTES"]
        self._check(counts)

    def _check(self, counts: list[tuple[str, int]]) -> None:
        total = sum(count for _, count in counts)
        if total > self.max_objects:
            shown = ", ".join(f"{name}: {count:,}" for name, count in counts if count)
            raise LimitError(
                f"the request holds {total:,} string/binary values ({shown}); this server takes"
                f" at most {self.max_objects:,} per request (serving.max_message_bytes /"
                f" {OBJECT_WIRE_BYTES}); send fewer rows per call")


def _declared(tensor: Any, raw: int) -> int:
    if not raw:
        return len(tensor.contents.bytes_contents)
    shape = list(tensor.shape)
    return math.prod(shape) if all(d >= 0 for d in shape) else 0


def _holder(message: Any, spec: ColumnSpec) -> Any:
    """The message that carries ``spec``'s field: a block of a wide message (``wire``)."""
    return getattr(message, block_field(spec.block)) if spec.block else message
