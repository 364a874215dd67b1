"""Diagnostics: where a problem is, how bad it is, and what to do about it.

Exception tree::

    PymlcError                 every error pymlc raises on purpose
    ├── SpecError              a spec (or its lock) has diagnostics of level error
    └── EmitError              an emitter could not express the plan (reported as diagnostics)

A diagnostic prints as ``pyml.yaml:12:5: error[E201]: inputs[2].type: unknown type 'flaot64'
(did you mean 'float64'?)``: the file, 1-based line and column, level, code, field and message.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_PRINTED",
    "Diagnostic",
    "EmitError",
    "Level",
    "Loc",
    "Position",
    "PymlcError",
    "SpecError",
    "format_loc",
    "render",
    "to_json",
]

MAX_PRINTED = 50

Loc = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Position:
    """A 1-based line and column in a source file."""

    line: int
    col: int


class Level(enum.Enum):
    """How bad a diagnostic is; ``--strict`` promotes warnings to errors."""

    ERROR = "error"
    WARNING = "warning"


def format_loc(loc: Loc) -> str:
    """Render a location path the way users write it: ``inputs[2].type``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a file.

    Attributes:
        file: the file as the user named it.
        loc: path of the field inside the document (empty for the whole file).
        position: where the field starts, or None when the file has no such place.
        level: error or warning.
        code: stable identifier, e.g. ``E201``.
        message: what is wrong, the bad value, and the fix.
    """

    file: str
    loc: Loc
    position: Position | None
    level: Level
    code: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.position is not None:
            where += f":{self.position.line}:{self.position.col}"
        field = format_loc(self.loc)
        prefix = f"{field}: " if field else ""
        return f"{where}: {self.level.value}[{self.code}]: {prefix}{self.message}"

    def sort_key(self) -> tuple[str, int, int, str, str]:
        pos = self.position or Position(0, 0)
        return (self.file, pos.line, pos.col, self.code, self.message)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "field": format_loc(self.loc),
            "line": self.position.line if self.position else None,
            "column": self.position.col if self.position else None,
            "level": self.level.value,
            "code": self.code,
            "message": self.message,
        }


def render(diagnostics: Sequence[Diagnostic], *, limit: int = MAX_PRINTED) -> str:
    """All diagnostics as text, one per line, at most ``limit`` then ``... and K more``."""
    lines = [str(d) for d in diagnostics[:limit]]
    if len(diagnostics) > limit:
        lines.append(f"... and {len(diagnostics) - limit} more")
    return "\n".join(lines)


def to_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2)


class PymlcError(Exception):
    """Base of every error pymlc raises on purpose; its text is meant for people."""


class SpecError(PymlcError):
    """A spec has errors; ``diagnostics`` holds every one found, sorted by position."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__(render(self.diagnostics))


class EmitError(SpecError):
    """An emitter cannot express something in the plan."""
