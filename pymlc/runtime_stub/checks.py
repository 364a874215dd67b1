"""The contract checks: inputs against the spec before ``predict``, outputs after it.

Inputs are *conformed*: a value of the right family is converted to the spec's dtype when no
value changes on the way (a safe widening from the type table, or a narrowing whose every value
fits); anything else is refused, never silently cast. Problems are collected over all fields and
raised once, each message naming its field, so a client can fix a request in one round trip.

Exceptions::

    ContractError (ValueError)
     +-- InputError    the request does not match the spec: the caller's fault
     +-- OutputError   ``predict`` returned something the spec does not allow: the model's fault

Representations the model sees (from the type table): a non-nullable column has the table's
numpy dtype; a nullable one its ``pandas_nullable`` dtype (masked ``Int32``/``boolean``, NaN for
floats, None for strings and bytes, NaT for dates and timestamps). Dates are held at the coarsest
unit pandas supports, ``datetime64[s]``, always at midnight. Tensors are numpy arrays of the
table's dtype, possibly read-only (decoded without a copy).

pandas cannot tell NaN from null, so NaN *is* null: a non-nullable float column refuses NaN as
it refuses null (inputs and outputs alike); infinities are values. A nullable input that a
request leaves out is null in every row (what a client of a spec without it means).

Row-wise problems (nulls where none are allowed, values that do not fit a narrower type) also
say which rows: ``ContractError.rows`` holds every offending position, the message the first
few.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from .config import FieldConfig
from .convert import (
    KIND_FAMILY,
    Mismatch,
    all_null,
    conform_values,
    describe,
    lossless,
    refuse_nulls,
)
from .types import COLUMN_TYPES, TENSOR_DTYPES, ColumnType, TensorDtype
from .wire import block_of

__all__ = [
    "ColumnSpec",
    "ContractError",
    "DecodedObjects",
    "InputError",
    "OutputError",
    "TensorSpec",
    "check_output_arrays",
    "check_output_columns",
    "check_output_tensors",
    "column_specs",
    "conform_columns",
    "conform_tensors",
    "tensor_specs",
    "without_rows",
]


class ContractError(ValueError):
    """Data that does not match the spec; ``problems`` holds one message per field.

    Args:
        problems: one message per bad field, each starting with the field's name.
        rows: for each field whose problem is row-wise (a null in a non-nullable column, a
            value out of range for a narrowing, ...), the 0-based positions of *all* its
            offending rows within the checked batch, ascending. Fields whose problem is not
            row-wise (missing, mistyped) are absent.

    Attributes:
        problems: the messages, as given.
        rows: the row positions, as given (empty when no problem is row-wise).
    """

    def __init__(self, problems: Sequence[str],
                 rows: Mapping[str, Sequence[int]] | None = None) -> None:
        self.problems = tuple(problems)
        self.rows: Mapping[str, tuple[int, ...]] = MappingProxyType(
            {name: tuple(positions) for name, positions in (rows or {}).items()})
        super().__init__("; ".join(self.problems))


class InputError(ContractError):
    """The input does not match the spec's inputs (missing, extra, mistyped or misshaped)."""


class OutputError(ContractError):
    """``predict`` returned outputs that do not match the spec's outputs."""


_ABSENT = object()


def _problem(name: str, exc: Mismatch, rows: np.ndarray[Any, Any] | None) -> str:
    """The message of a field's problem, with the first few offending rows."""
    if rows is None or not len(rows):
        return f"{name}: {exc}"
    shown = ", ".join(map(str, rows[:_SHOWN_ROWS].tolist()))
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    where = f"row {shown}" if len(rows) == 1 else f"rows {shown}{more}"
    return f"{name}: {exc} ({where})"


_SHOWN_ROWS = 5


def without_rows(problem: str) -> str:
    """``problem`` without the ``(row ...)`` / ``(rows ...)`` suffix ``_problem`` adds: for a
    caller that names the rows its own way (the batch job: by passthrough id or position in
    the query's partition), from ``ContractError.rows``."""
    head, sep, tail = problem.rpartition(" (row")
    if sep and tail.endswith(")") and tail.lstrip("s ")[:1].isdigit():
        return head
    return problem


@dataclass(frozen=True)
class ColumnSpec:
    """One dataframe column of the spec, with the dtype the model sees precomputed.

    ``block`` is the block of a wide typed message that carries it (0: the message itself;
    see ``wire``).
    """

    name: str
    type: ColumnType
    nullable: bool
    dtype: Any  # np.dtype or a pandas ExtensionDtype
    numpy: np.dtype[Any]
    block: int = 0


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the spec: its dtype row, numpy dtype and shape (-1 = any size)."""

    name: str
    type: TensorDtype
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    # The shape after its first dimension when that is the only wildcard (a batch of fixed-size
    # samples, the usual case): then one tuple comparison checks a shape.
    tail: tuple[int, ...] | None = None
    rank: int = 0


@dataclass(frozen=True, slots=True)
class DecodedObjects:
    """A string or binary column as a wire decoder built it, with what the decoder knows.

    ``values`` is a fresh 1-D object array holding only ``str`` (``family`` "string") or only
    ``bytes`` ("binary"), except None exactly where ``nulls`` is True (``nulls`` None: no
    nulls). The checks take that word instead of walking the values again for their kind and
    nulls (``infer_dtype``, ``pd.isna``: the costliest steps of a text column's check); only
    the decoders build one, from a proto ``string``/``bytes`` field or OIP BYTES. Any other
    column, a plain object array among them, is walked as before.
    """

    values: np.ndarray[Any, Any]
    nulls: np.ndarray[Any, np.dtype[np.bool_]] | None
    family: str

    def __len__(self) -> int:
        return len(self.values)


def column_specs(fields: Iterable[FieldConfig]) -> tuple[ColumnSpec, ...]:
    """Precompute the per-column facts the checks need, from the type table.

    Args:
        fields: the spec's inputs or outputs of a dataframe model.

    Returns:
        One ``ColumnSpec`` per field, in spec order.
    """
    return tuple(_column_spec(f) for f in fields)


def _column_spec(field: FieldConfig) -> ColumnSpec:
    row = COLUMN_TYPES[field.type]
    numpy = np.dtype(row.numpy)
    if field.nullable and row.pandas_nullable != row.numpy:
        dtype: Any = pd.api.types.pandas_dtype(row.pandas_nullable)
    else:
        # pandas holds datetime64[D] as datetime64[s]; ask pandas rather than assume.
        dtype = pd.Series(np.empty(0, dtype=numpy)).dtype
    return ColumnSpec(field.name, row, field.nullable, dtype, numpy, block_of(field.number))


def tensor_specs(fields: Iterable[FieldConfig]) -> tuple[TensorSpec, ...]:
    """Precompute the per-tensor facts the checks need, from the type table.

    Args:
        fields: the spec's inputs or outputs of a tensor model.

    Returns:
        One ``TensorSpec`` per field, in spec order.
    """
    specs = []
    for f in fields:
        row = TENSOR_DTYPES[f.type]
        shape = tuple(f.shape or ())
        tail = shape[1:] if shape[:1] == (-1,) and -1 not in shape[1:] else None
        specs.append(TensorSpec(f.name, row, np.dtype(row.numpy), shape, tail, len(shape)))
    return tuple(specs)


# --- dataframes ---------------------------------------------------------------------------

def conform_columns(columns: Mapping[str, Any], specs: Sequence[ColumnSpec]) -> pd.DataFrame:
    """Check input columns against the spec and build the DataFrame ``predict`` receives.

    Args:
        columns: column name -> values (numpy array, pandas array or Series), one per row.
        specs: the spec's inputs, from ``column_specs``.

    Returns:
        A DataFrame with exactly the spec's columns, in spec order, with the spec's dtypes and
        a fresh ``RangeIndex``.

    Raises:
        InputError: columns are missing, extra, of different lengths, of an unsafe type, or
            hold nulls where the spec does not allow them; every problem is listed.
    """
    checked = _conform_all(columns, specs, "input")
    if checked.problems:
        raise InputError(checked.problems, _positions(checked.rows))
    return pd.DataFrame(checked.arrays, copy=False)


def check_output_columns(frame: object, specs: Sequence[ColumnSpec], rows: int) -> pd.DataFrame:
    """Check what a dataframe model's ``predict`` returned.

    Args:
        frame: the return value of ``predict``.
        specs: the spec's outputs, from ``column_specs``.
        rows: the number of input rows; the output must have exactly as many.

    Returns:
        The outputs in spec order and dtypes, with a fresh ``RangeIndex``.

    Raises:
        OutputError: not a DataFrame, wrong row count, or a column missing, extra or mistyped.
    """
    return pd.DataFrame(check_output_arrays(frame, specs, rows), copy=False)


def check_output_arrays(frame: object, specs: Sequence[ColumnSpec],
                        rows: int) -> dict[str, Any]:
    """Like ``check_output_columns``, but the columns as arrays (no second DataFrame).

    Args:
        frame: the return value of ``predict``.
        specs: the spec's outputs.
        rows: the number of input rows.

    Returns:
        Output name -> numpy or pandas array in the spec's dtype, in spec order.

    Raises:
        OutputError: as for ``check_output_columns``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise OutputError([f"predict returned {type(frame).__name__}, expected a pandas"
                           " DataFrame with the spec's output columns"])
    if len(frame) != rows:
        raise OutputError([f"predict returned {len(frame)} rows for {rows} input rows;"
                           " it must return one output row per input row"])
    columns = {str(name): frame[name] for name in frame.columns}
    checked = _conform_all(columns, specs, "output")
    if len(columns) != len(frame.columns):
        checked.problems.insert(0, "predict returned duplicate column names")
    if checked.problems:
        raise OutputError(checked.problems, _positions(checked.rows))
    return checked.arrays


class _Checked:
    """What checking a set of columns found: the conformed arrays and every problem."""

    __slots__ = ("arrays", "problems", "rows")

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}
        self.problems: list[str] = []
        self.rows: dict[str, np.ndarray[Any, Any]] = {}

    def mismatch(self, name: str, exc: Mismatch) -> None:
        rows = None if exc.bad is None else np.flatnonzero(exc.bad)
        self.problems.append(_problem(name, exc, rows))
        if rows is not None:
            self.rows[name] = rows


def _conform_all(columns: Mapping[str, Any], specs: Sequence[ColumnSpec],
                 role: str) -> _Checked:
    # Runs twice per request (inputs, outputs): the common case, exactly the spec's columns,
    # builds no name set and no per-column lengths.
    checked = _Checked()
    arrays, problems = checked.arrays, checked.problems
    present = 0
    left_out: list[ColumnSpec] = []
    for spec in specs:
        column = columns.get(spec.name, _ABSENT)
        if column is _ABSENT:
            if role == "input" and spec.nullable:
                left_out.append(spec)  # all null, once the other columns give the row count
            else:
                problems.append(f"{spec.name}: missing {role} column ({describe(spec)})")
            continue
        present += 1
        try:
            arrays[spec.name] = _conform_decoded(column, spec) \
                if type(column) is DecodedObjects else conform_values(_values(column), spec)
        except Mismatch as exc:
            checked.mismatch(spec.name, exc)
    if len(columns.keys()) > present:  # keys: a DataFrame passed as the mapping has rows too
        names = {s.name for s in specs}
        problems[:0] = [f"{name}: unexpected {role} column (the spec has no such {role})"
                        for name in columns if name not in names]
    lengths = set(map(len, arrays.values()))
    if len(lengths) > 1:
        shown = ", ".join(f"{name}={len(values)}" for name, values in arrays.items())
        problems.append(f"columns have different lengths ({shown}); every column needs one"
                        " value per row")
    if left_out:
        _fill_left_out(checked, left_out, specs, lengths if present else set())
    return checked


def _fill_left_out(checked: _Checked, left_out: Sequence[ColumnSpec],
                   specs: Sequence[ColumnSpec], lengths: set[int]) -> None:
    """Nullable inputs a request left out are all null: what a client of a spec without them
    (``pymlc diff`` calls adding one compatible) means. Only the other columns can say how
    many rows that is."""
    if not lengths:
        checked.problems.extend(
            f"{s.name}: missing input column ({describe(s)}); a nullable input may be left out"
            " (it is then null in every row) only beside an input that gives the row count"
            for s in left_out)
        return
    if len(lengths) > 1 or checked.problems:
        return  # the row count is unknown or the request is refused anyway
    (rows,) = lengths
    filled = {s.name: all_null(s, rows) for s in left_out}
    arrays = {s.name: checked.arrays.get(s.name, filled.get(s.name)) for s in specs}
    checked.arrays = {name: values for name, values in arrays.items() if values is not None}


def _positions(rows: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(positions.tolist()) for name, positions in rows.items()}


def _values(column: Any) -> Any:
    if isinstance(column, pd.Series):
        return column.array if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) \
            else column.to_numpy()
    if isinstance(column, np.ndarray | pd.api.extensions.ExtensionArray):
        return column
    return np.asarray(column, dtype=object) if isinstance(column, list | tuple) \
        else np.asarray(column)


def _conform_decoded(column: DecodedObjects, spec: ColumnSpec) -> Any:
    """A decoder's string/binary column: its kind and nulls are known, nothing to walk."""
    if column.family != spec.type.family:  # not what this column holds: check it the long way
        return conform_values(column.values, spec)
    refuse_nulls(column.nulls, spec)
    return column.values


# --- tensors ------------------------------------------------------------------------------

def conform_tensors(tensors: Mapping[str, Any],
                    specs: Sequence[TensorSpec]) -> dict[str, np.ndarray[Any, Any]]:
    """Check input tensors against the spec: names, dtypes (lossless casts only) and shapes.

    Args:
        tensors: tensor name -> array (anything ``np.asarray`` accepts).
        specs: the spec's inputs, from ``tensor_specs``.

    Returns:
        Each spec input by name, as a numpy array of the spec's dtype.

    Raises:
        InputError: a tensor is missing, extra, of an unsafe dtype or of the wrong shape.
    """
    checked = _conform_tensors(tensors, specs, "input")
    if checked.problems:
        raise InputError(checked.problems, _positions(checked.rows))
    return checked.arrays


def check_output_tensors(tensors: object,
                         specs: Sequence[TensorSpec]) -> dict[str, np.ndarray[Any, Any]]:
    """Check what a tensor model's ``predict`` returned.

    Args:
        tensors: the return value of ``predict``.
        specs: the spec's outputs, from ``tensor_specs``.

    Returns:
        Each spec output by name, in spec order, with the spec's dtype.

    Raises:
        OutputError: not a dict, or an output missing, extra, mistyped or misshaped.
    """
    if not isinstance(tensors, dict) and not isinstance(tensors, Mapping):  # dict: no ABC check
        raise OutputError([f"predict returned {type(tensors).__name__}, expected a dict of"
                           " numpy arrays named by the spec's outputs"])
    checked = _conform_tensors(tensors, specs, "output")
    if checked.problems:
        raise OutputError(checked.problems, _positions(checked.rows))
    return checked.arrays


def _conform_tensors(tensors: Mapping[str, Any], specs: Sequence[TensorSpec],
                     role: str) -> _Checked:
    # Runs twice per request (inputs, outputs): the common case of exactly the spec's tensors
    # with the spec's dtypes costs a lookup, a shape and a dtype comparison per tensor.
    checked = _Checked()
    arrays, problems = checked.arrays, checked.problems
    present = 0
    for spec in specs:
        value = tensors.get(spec.name, _ABSENT)
        if value is _ABSENT:
            problems.append(f"{spec.name}: missing {role} tensor ({spec.type.name}"
                            f" {list(spec.shape)})")
            continue
        present += 1
        if type(value) is np.ndarray and value.dtype == spec.dtype \
                and value.shape[1:] == spec.tail and value.ndim == spec.rank:
            arrays[spec.name] = value  # exactly as the spec says: nothing to convert
            continue
        array = np.asarray(value)
        try:
            arrays[spec.name] = _conform_tensor(array, spec)
        except Mismatch as exc:
            if exc.bad is not None and array.ndim:  # a row is a sample: the first axis
                exc.bad = np.asarray(exc.bad.reshape(len(array), -1).any(axis=1))
            checked.mismatch(spec.name, exc)
    if len(tensors) > present:
        names = {s.name for s in specs}
        problems[:0] = [f"{name}: unexpected {role} tensor (the spec has no such {role})"
                        for name in tensors if name not in names]
    return checked


def _conform_tensor(array: np.ndarray[Any, Any], spec: TensorSpec) -> np.ndarray[Any, Any]:
    shape = array.shape
    if shape != spec.shape and not _fits(shape, spec.shape):
        raise Mismatch(f"shape {list(array.shape)} does not match {list(spec.shape)}"
                       " (-1 = any size)")
    if array.dtype == spec.dtype:
        return array
    family = KIND_FAMILY.get(array.dtype.kind) or str(array.dtype)
    if family != spec.type.family:
        raise Mismatch(f"expected dtype {spec.type.name}, got {array.dtype}"
                       " (only lossless conversions are applied)")
    if array.ndim == 0:
        return lossless(array.reshape(1), spec.dtype, family).reshape(())
    return lossless(array.reshape(-1), spec.dtype, family).reshape(array.shape)


def _fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    if len(shape) != len(wanted):
        return False
    for got, want in zip(shape, wanted, strict=True):
        if want != -1 and want != got:
            return False
    return True
