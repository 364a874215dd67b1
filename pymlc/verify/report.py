"""The side-by-side report of ``pymlc verify``: every example row and output field as each path
gave it, and whether they agree.

Each path is compared with the first path that produced outputs (in-process, when it worked),
and that reference with the spec's expected output when there is one. Numbers agree within the
spec's tolerance (``rtol``/``atol``, as ``numpy.isclose``; NaN equals NaN), everything else
exactly; null equals null. A path that failed makes the report fail; a path that cannot run for
this kind of model is named in the report, never silently left out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .examples import Examples
from .paths import PathResult

__all__ = ["EXPECTED", "Report", "Row", "compare", "format_value"]

EXPECTED = "expected"
_SHOWN_ITEMS = 3


@dataclass(frozen=True)
class Row:
    """One example row and output field: the value per column and whether they agree."""

    row: int
    field: str
    values: dict[str, Any]
    match: bool


@dataclass(frozen=True)
class Report:
    """Everything ``pymlc verify`` found for one model.

    Attributes:
        name, version: the model.
        columns: the report's value columns: the paths, then ``expected`` if the spec has one.
        paths: each path's result (outputs, error, or why it is not supported).
        rows: one per example row and output field.
        problems: every failure, one line each (empty when verification passed).
        notes: what was not verified, and why (paths not supported for this model).
        rtol, atol: the tolerance used.
    """

    name: str
    version: str
    columns: tuple[str, ...]
    paths: tuple[PathResult, ...]
    rows: tuple[Row, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    rtol: float = 0.0
    atol: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (values as displayed in the table)."""
        return {
            "ok": self.ok, "name": self.name, "version": self.version,
            "tolerance": {"rtol": self.rtol, "atol": self.atol},
            "paths": [{"name": p.name, "ok": p.outputs is not None, "error": p.error,
                       "unsupported": p.unsupported, "seconds": round(p.seconds, 3)}
                      for p in self.paths],
            "rows": [{"row": r.row, "field": r.field, "match": r.match,
                      "values": {k: format_value(v) for k, v in r.values.items()}}
                     for r in self.rows],
            "problems": list(self.problems), "notes": list(self.notes),
        }


def compare(name: str, version: str, examples: Examples, paths: Sequence[PathResult],
            outputs: Sequence[str]) -> Report:
    """Put the paths' outputs side by side and find every disagreement.

    Args:
        name, version: the model.
        examples: the examples (expected output and tolerance).
        paths: the results, in-process first.
        outputs: the spec's output names, in spec order.
    """
    columns = tuple(p.name for p in paths) + ((EXPECTED,) if examples.expected else ())
    sources: dict[str, dict[str, Any] | None] = {p.name: p.outputs for p in paths}
    if examples.expected is not None:
        sources[EXPECTED] = examples.expected
    problems = [f"{p.name}: {p.error}" for p in paths if p.error]
    notes = [f"{p.name}: {p.unsupported}" for p in paths if p.unsupported]
    problems += _shape_problems(sources, outputs, examples.rows)
    rows: list[Row] = []
    for index in range(examples.rows):
        for out in outputs:
            values = {c: _cell(sources.get(c), out, index) for c in columns}
            present = [c for c in columns if sources.get(c) is not None]
            match = all(_close(values[present[0]], values[c], examples.rtol, examples.atol)
                        for c in present[1:]) and not any(p.error for p in paths)
            rows.append(Row(index, out, values, match))
            if present and not match and not any(p.error for p in paths):
                differing = [c for c in present[1:] if not _close(
                    values[present[0]], values[c], examples.rtol, examples.atol)]
                problems.append(f"row {index}, {out}: {', '.join(differing)} differ"
                                f" from {present[0]} beyond rtol={examples.rtol},"
                                f" atol={examples.atol}")
    return Report(name, version, columns, tuple(paths), tuple(rows), tuple(problems),
                  tuple(notes), examples.rtol, examples.atol)


_MISSING = object()


def _cell(source: dict[str, Any] | None, out: str, index: int) -> Any:
    if source is None or out not in source:
        return _MISSING
    values = source[out]
    if index >= len(values):
        return _MISSING
    return _plain(values[index])


def _shape_problems(sources: dict[str, dict[str, Any] | None], outputs: Sequence[str],
                    rows: int) -> list[str]:
    problems = []
    for column, source in sources.items():
        if source is None:
            continue
        for out in outputs:
            if out not in source:
                problems.append(f"{column}: output {out!r} is missing")
            elif len(source[out]) != rows:
                problems.append(f"{column}: {out} has {len(source[out])} rows, the examples"
                                f" {rows}")
    return problems


def _plain(value: Any) -> Any:
    """One cell as a plain value: None for nulls, Python scalars, numpy arrays for tensors."""
    if isinstance(value, np.ndarray):
        return value if value.ndim else _plain(value.item())
    if value is None or (not isinstance(value, (str, bytes, list)) and _is_null(value)):
        return None
    if isinstance(value, (dt.datetime, dt.date, np.datetime64)):
        return _instant(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _instant(value: Any) -> str:
    # Each path may give a datetime, a Timestamp or a datetime64: compare them as UTC text.
    import pandas as pd

    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return str(stamp.isoformat())


def _is_null(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value)) and not (isinstance(value, float) and math.isnan(value))
    except (TypeError, ValueError):
        return False


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if a is _MISSING or b is _MISSING:
        return False
    if a is None or b is None:
        return a is None and b is None
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return False
    if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
        return bool(np.all(np.isclose(x.astype(np.float64), y.astype(np.float64), rtol=rtol,
                                      atol=atol, equal_nan=True)))
    return bool(np.array_equal(x, y))


def format_value(value: Any) -> str:
    """A cell as the table shows it: ``null``, ``-`` (no value), numbers with 10 significant
    digits, arrays by their first items and length."""
    if value is _MISSING:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, np.ndarray):
        items = value.ravel()
        shown = ", ".join(_short(_plain(v)) for v in items[:_SHOWN_ITEMS])
        more = ", …" if items.size > _SHOWN_ITEMS else ""
        return f"[{shown}{more}] {list(value.shape)}"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, bytes):
        return repr(value[:40])
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else format_value(value)
