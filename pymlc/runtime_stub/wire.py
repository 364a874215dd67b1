"""Names and layout of the typed proto's messages: dependency-free facts the compiler's emitter
and validator and the runtime's codecs share.

Messages: ``PredictRequest`` and ``PredictResponse``; a dataframe column travels as a
``<T>Column`` message (``column_message``), a tensor as a ``Tensor``.

Wide messages: protobuf's Python runtime (upb) refuses a message whose fields take more than
64 KiB in memory, about 8,000 fields of a message type: a 10,000-column ``PredictRequest`` would
not even load. A wide message therefore nests its fields in blocks. Block 0 is the message
itself; block ``k`` (1, 2, ...) is the field ``block_<k>`` of the message, number ``k << 20``,
of type ``<Message>Block<k>``, holding the fields numbered ``(k << 20) + 1 .. ((k + 1) << 20) - 1``.

So the number alone says where a field travels, and numbers never change (``pyml.lock``): a
field never moves between blocks. The lock gives a new field a number in the first block with
fewer than ``BLOCK_FIELDS`` fields; a spec of up to ``BLOCK_FIELDS`` fields (every spec but a
wide one) is a flat message, exactly as before blocks existed.
"""

from __future__ import annotations

__all__ = [
    "BLOCK_FIELDS",
    "MESSAGES",
    "TENSOR_MESSAGE",
    "block_field",
    "block_message",
    "block_number",
    "block_numbers",
    "block_of",
    "column_message",
    "usable",
]

MESSAGES = ("PredictRequest", "PredictResponse")
TENSOR_MESSAGE = "Tensor"
BLOCK_FIELDS = 5000
_SHIFT = 20
_LAST_NUMBER = 2**29 - 1  # protobuf's largest field number
# protoc keeps 19000..19999 for itself; they fall in block 0.
_PROTOBUF_RESERVED = range(19000, 20000)


def column_message(proto: str) -> str:
    """The message a column of protobuf scalar type ``proto`` travels in (``DoubleColumn``)."""
    return proto[0].upper() + proto[1:] + "Column"


def block_of(number: int) -> int:
    """The block that holds the field numbered ``number`` (0: the message itself)."""
    return number >> _SHIFT


def block_field(block: int) -> str:
    """The name of the field of the message that holds block ``block`` (1, 2, ...)."""
    return f"block_{block}"


def block_number(block: int) -> int:
    """The field number of the field ``block_field(block)`` in the message."""
    return block << _SHIFT


def block_message(message: str, block: int) -> str:
    """The name of the message type of block ``block`` of ``message``."""
    return f"{message}Block{block}"


def block_numbers(block: int) -> range:
    """The field numbers of block ``block`` (empty past the last); ``usable`` says which may
    name a field."""
    return range(block_number(block) + 1, min(block_number(block + 1), _LAST_NUMBER + 1))


def usable(number: int) -> bool:
    """Whether ``number`` may name a field: in protobuf's range, not reserved, not a block."""
    return 1 <= number <= _LAST_NUMBER and number not in _PROTOBUF_RESERVED \
        and number != block_number(block_of(number))
