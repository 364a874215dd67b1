"""The lock, ``pyml.lock``: the protobuf field number of every input and output, forever.

A field keeps its number while it exists. A removed field's number is retired (``reserved`` in
the proto) and never handed out again, so old clients can never be misread. In a wide message
the number also says which block the field travels in (``runtime_stub.wire``). The lock is
JSON, sorted, so that it diffs well in review. Its format::

    {"pyml_lock": 1,
     "inputs":  {"fields": {"city": 2, ...}, "reserved": [{"name": "zone", "number": 4}]},
     "outputs": {"fields": {"fare": 1}, "reserved": []}}
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..runtime_stub.wire import BLOCK_FIELDS, block_numbers, block_of, usable
from .errors import Diagnostic, Level, SpecError

__all__ = ["LOCK_FILE", "EMPTY_LOCK", "Lock", "LockedMessage", "parse_lock", "render_lock",
           "update_lock"]

LOCK_FILE = "pyml.lock"
_FORMAT = 1
_SECTIONS = ("inputs", "outputs")


@dataclass(frozen=True)
class LockedMessage:
    fields: tuple[tuple[str, int], ...]
    reserved: tuple[tuple[str, int], ...]

    def number(self, name: str) -> int:
        return self._numbers[name]

    @cached_property
    def _numbers(self) -> dict[str, int]:
        # Looked up once per field while lowering: a dict built per call made a 10,000-column
        # spec take seconds.
        return dict(self.fields)

    def update(self, names: Sequence[str]) -> LockedMessage:
        current = dict(self.fields)
        numbers = _Numbers([n for _, n in (*self.fields, *self.reserved)],
                           [current[name] for name in names if name in current])
        fields = {name: current[name] if name in current else numbers.take() for name in names}
        retired = [(name, num) for name, num in self.fields if name not in fields]
        reserved = sorted({*self.reserved, *retired}, key=lambda item: item[1])
        return LockedMessage(tuple(sorted(fields.items(), key=lambda i: i[1])), tuple(reserved))


@dataclass(frozen=True)
class Lock:
    inputs: LockedMessage
    outputs: LockedMessage

    def section(self, name: str) -> LockedMessage:
        return self.inputs if name == "inputs" else self.outputs


class _Numbers:
    """Hands out fresh field numbers: never one used before, in the first block with room."""

    def __init__(self, used: Sequence[int], kept: Sequence[int]) -> None:
        self._next: dict[int, int] = {}  # block -> the number after the highest it ever used
        for number in used:
            block = block_of(number)
            self._next[block] = max(self._next.get(block, 0), number + 1)
        self._counts = Counter(block_of(n) for n in kept)

    def take(self) -> int:
        block = 0
        while True:
            numbers = block_numbers(block)
            number = max(self._next.get(block, 0), numbers.start)
            while number in numbers and not usable(number):  # protobuf's 19000..19999
                number += 1
            if self._counts[block] < BLOCK_FIELDS and number in numbers:
                self._next[block] = number + 1
                self._counts[block] += 1
                return number
            if not numbers:  # millions of fields: beyond what a spec file can hold
                raise ValueError("no protobuf field number is left")
            block += 1


EMPTY_LOCK = Lock(LockedMessage((), ()), LockedMessage((), ()))


def update_lock(lock: Lock, inputs: Sequence[str], outputs: Sequence[str]) -> Lock:
    """The lock after the spec's inputs and outputs became ``inputs`` and ``outputs``."""
    return Lock(lock.inputs.update(inputs), lock.outputs.update(outputs))


def render_lock(lock: Lock) -> str:
    data: dict[str, Any] = {"pyml_lock": _FORMAT}
    for section in _SECTIONS:
        message = lock.section(section)
        data[section] = {
            "fields": dict(sorted(message.fields)),
            "reserved": [{"name": n, "number": num} for n, num in message.reserved],
        }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def parse_lock(text: str, file: str) -> Lock:
    """Read a lock file.

    Raises:
        SpecError: the file is not a valid lock; the message says how to recover.
    """
    try:
        data = json.loads(text)
        if data.get("pyml_lock") != _FORMAT:
            raise ValueError(f"unsupported lock format {data.get('pyml_lock')!r}")
        return Lock(*(_parse_section(data[s]) for s in _SECTIONS))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpecError([Diagnostic(
            file, (), None, Level.ERROR, "E401",
            f"not a valid lock file ({exc}); restore it from version control. Deleting it"
            " renumbers every field and breaks existing clients")]) from None


def _parse_section(data: dict[str, Any]) -> LockedMessage:
    fields = tuple(sorted(((str(k), _number(v)) for k, v in data["fields"].items()),
                          key=lambda i: i[1]))
    reserved = tuple((str(r["name"]), _number(r["number"])) for r in data["reserved"])
    numbers = [n for _, n in fields] + [n for _, n in reserved]
    if len(set(numbers)) != len(numbers):
        raise ValueError("a field number appears twice")
    return LockedMessage(fields, reserved)


def _number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not usable(value):
        raise ValueError(f"field number {value!r} is not an integer in 1..{2**29 - 1} outside"
                         " protobuf's reserved 19000..19999 and the numbers of blocks")
    return value
