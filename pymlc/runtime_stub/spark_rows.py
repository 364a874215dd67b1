"""Naming the rows a batch job fails on, in one line a person can act on.

A batch that breaks the spec's input contract fails the job (the table is left as it was). The
worker raises ``BadRowsError`` instead of the bare ``InputError``, its message the input check's
problems, each with the rows it concerns: by the first passthrough column when the spec has one
(``rows with trip_id 77, 81``), else by position in the query's partition the worker was
scoring. The rows come from the error itself when it names them (``InputError.rows``: field ->
positions in the batch), else from the checks run again on halves of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .checks import without_rows

__all__ = ["MICROS_PREFIX", "PASSTHROUGH_PREFIX", "BadRowsError", "bad_rows", "check_micros"]

# Passthrough columns travel to the worker under these aliases, so that a passthrough column
# may share its name with an input (which is cast to the spec's type) and keep the query's type.
PASSTHROUGH_PREFIX = "__pyml_passthrough_"
# For each nanosecond timestamp of the query, whether its value is whole microseconds.
MICROS_PREFIX = "__pyml_micros_"
_SHOWN = 5  # rows named per problem; the message says how many more


class BadRowsError(ValueError):
    """Rows that break the spec's input contract; the message names the columns and rows."""


def bad_rows(error: Any, batch: pa.RecordBatch, passthrough: Sequence[str], offset: int, *,
             locate: Callable[[], Sequence[int]] | None = None) -> BadRowsError:
    """The ``BadRowsError`` for an ``InputError`` raised on ``batch``.

    Args:
        error: the ``InputError`` (its ``problems``, and its ``rows`` when it has them).
        batch: the batch it was raised on, with the passthrough columns.
        passthrough: the passthrough columns' output names; the first one identifies rows.
        offset: rows of the same partition before this batch.
        locate: finds the offending rows when the error does not name them.

    Returns:
        The error to raise: one line, every problem with its rows.
    """
    by_field: Mapping[str, Sequence[int]] = getattr(error, "rows", None) or {}
    problems = [_with_rows(p, by_field.get(p.partition(":")[0], ()), batch, passthrough, offset)
                for p in error.problems]
    if not by_field and locate is not None:
        found = locate()
        if found:
            problems[-1] = _with_rows(problems[-1], found, batch, passthrough, offset)
    return BadRowsError("; ".join(problems))


def check_micros(batch: pa.RecordBatch, names: Sequence[str], passthrough: Sequence[str],
                 offset: int) -> None:
    """Refuse timestamps with digits below the microsecond, as the server refuses them.

    Raises:
        BadRowsError: naming each such column and its rows.
    """
    problems = []
    for index, name in enumerate(names):
        whole = batch.column(MICROS_PREFIX + str(index)).fill_null(True)
        rows = np.flatnonzero(~whole.to_numpy(zero_copy_only=False))
        if len(rows):
            problem = (f"{name}: {len(rows)} timestamp(s) with digits below the microsecond;"
                       " timestamps are microseconds, as the server reads them: truncate them"
                       " in the query, e.g. CAST(... AS TIMESTAMP)")
            problems.append(_with_rows(problem, rows.tolist(), batch, passthrough, offset))
    if problems:
        raise BadRowsError("; ".join(problems))


def _with_rows(problem: str, rows: Sequence[int], batch: pa.RecordBatch,
               passthrough: Sequence[str], offset: int) -> str:
    if not len(rows):
        return problem
    problem = without_rows(problem)
    shown = [int(r) for r in list(rows)[:_SHOWN]]
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    if passthrough:
        ids = batch.column(PASSTHROUGH_PREFIX + passthrough[0]).take(pa.array(shown))
        values = ", ".join("null" if v is None else str(v) for v in ids.to_pylist())
        return f"{problem} (rows with {passthrough[0]} {values}{more})"
    positions = ", ".join(f"{offset + r:,}" for r in shown)
    return f"{problem} (rows {positions}{more} of partition {_partition()} of the query)"


def _partition() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0
