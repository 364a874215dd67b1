"""The lock, ``pyml.lock``: the protobuf field number of every input and output, forever.

A field keeps its number while it exists. A removed field's number is retired (``reserved`` in
the proto) and never handed out again, so old clients can never be misread. The lock is JSON,
sorted, so that it diffs well in review. Its format::

    {"pyml_lock": 1,
     "inputs":  {"fields": {"city": 2, ...}, "reserved": [{"name": "zone", "number": 4}]},
     "outputs": {"fields": {"fare": 1}, "reserved": []}}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .errors import Diagnostic, Level, SpecError

__all__ = ["LOCK_FILE", "EMPTY_LOCK", "Lock", "LockedMessage", "parse_lock", "render_lock",
           "update_lock"]

LOCK_FILE = "pyml.lock"
_FORMAT = 1
_SECTIONS = ("inputs", "outputs")
# protobuf's field numbers: 1..2**29-1 less 19000..19999, which protoc keeps for itself. Numbers
# are never reused, so a wide spec whose columns are renamed a few times walks past 19000.
_MAX_NUMBER = 2**29 - 1
_PROTOBUF_RESERVED = range(19000, 20000)


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
        used = [n for _, n in self.fields] + [n for _, n in self.reserved]
        next_number = max(used, default=0) + 1
        fields: dict[str, int] = {}
        for name in names:
            if name in current:
                fields[name] = current[name]
            else:
                next_number = _usable(next_number)
                fields[name] = next_number
                next_number += 1
        retired = [(name, num) for name, num in self.fields if name not in fields]
        reserved = sorted({*self.reserved, *retired}, key=lambda item: item[1])
        return LockedMessage(tuple(sorted(fields.items(), key=lambda i: i[1])), tuple(reserved))


@dataclass(frozen=True)
class Lock:
    inputs: LockedMessage
    outputs: LockedMessage

    def section(self, name: str) -> LockedMessage:
        return self.inputs if name == "inputs" else self.outputs


def _usable(number: int) -> int:
    """``number``, or the first number after protobuf's reserved range when inside it."""
    return _PROTOBUF_RESERVED.stop if number in _PROTOBUF_RESERVED else number


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
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_NUMBER \
            or value in _PROTOBUF_RESERVED:
        raise ValueError(f"field number {value!r} is not an integer in 1..{_MAX_NUMBER} outside"
                         f" protobuf's reserved {_PROTOBUF_RESERVED.start}..."
                         f"{_PROTOBUF_RESERVED.stop - 1}")
    return value
