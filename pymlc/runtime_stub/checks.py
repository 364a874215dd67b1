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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from .config import FieldConfig
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
]


class ContractError(ValueError):
    """Data that does not match the spec; ``problems`` holds one message per field.

    Args:
        problems: one message per bad field, each starting with the field's name.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class InputError(ContractError):
    """The input does not match the spec's inputs (missing, extra, mistyped or misshaped)."""


class OutputError(ContractError):
    """``predict`` returned outputs that do not match the spec's outputs."""


_ABSENT = object()


class _Mismatch(Exception):
    """One field's problem, raised inside a converter and collected by the caller."""


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
    arrays, problems = _conform_all(columns, specs, "input")
    if problems:
        raise InputError(problems)
    return pd.DataFrame(arrays, copy=False)


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
    arrays, problems = _conform_all(columns, specs, "output")
    if len(columns) != len(frame.columns):
        problems.insert(0, "predict returned duplicate column names")
    if problems:
        raise OutputError(problems)
    return arrays


def _conform_all(columns: Mapping[str, Any], specs: Sequence[ColumnSpec],
                 role: str) -> tuple[dict[str, Any], list[str]]:
    # Runs twice per request (inputs, outputs): the common case, exactly the spec's columns,
    # builds no name set and no per-column lengths.
    arrays: dict[str, Any] = {}
    problems: list[str] = []
    present = 0
    for spec in specs:
        column = columns.get(spec.name, _ABSENT)
        if column is _ABSENT:
            problems.append(f"{spec.name}: missing {role} column ({_describe(spec)})")
            continue
        present += 1
        try:
            arrays[spec.name] = _conform_decoded(column, spec) \
                if type(column) is DecodedObjects else _conform_column(_values(column), spec)
        except _Mismatch as exc:
            problems.append(f"{spec.name}: {exc}")
    if len(columns.keys()) > present:  # keys: a DataFrame passed as the mapping has rows too
        names = {s.name for s in specs}
        problems[:0] = [f"{name}: unexpected {role} column (the spec has no such {role})"
                        for name in columns if name not in names]
    if len(set(map(len, arrays.values()))) > 1:
        shown = ", ".join(f"{name}={len(values)}" for name, values in arrays.items())
        problems.append(f"columns have different lengths ({shown}); every column needs one"
                        " value per row")
    return arrays, problems


def _describe(spec: ColumnSpec) -> str:
    return spec.type.name + (", nullable" if spec.nullable else "")


def _values(column: Any) -> Any:
    if isinstance(column, pd.Series):
        return column.array if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) \
            else column.to_numpy()
    if isinstance(column, np.ndarray | pd.api.extensions.ExtensionArray):
        return column
    return np.asarray(column, dtype=object) if isinstance(column, list | tuple) \
        else np.asarray(column)


def _conform_column(values: Any, spec: ColumnSpec) -> Any:
    if values.ndim != 1:
        raise _Mismatch(f"expected one value per row, got an array of shape {values.shape}")
    family = spec.type.family
    same = _UNCHANGED.get(family) if values.dtype == spec.dtype else None
    if same is not None and family not in ("string", "binary"):  # the hot path: dtype says all
        return same(values, spec)
    given = _family(values, spec)
    if given != family:
        raise _Mismatch(f"expected {_describe(spec)}, got {_shown_dtype(values, given)}"
                        " (only lossless conversions are applied)")
    return same(values, spec) if same is not None else _CONVERT[family](values, spec)


def _conform_decoded(column: DecodedObjects, spec: ColumnSpec) -> Any:
    """A decoder's string/binary column: its kind and nulls are known, nothing to walk."""
    if column.family != spec.type.family:  # not what this column holds: check it the long way
        return _conform_column(column.values, spec)
    _refuse_nulls(column.nulls, spec)
    return column.values


def _shown_dtype(values: Any, family: str) -> str:
    if values.dtype == object:
        return f"values of kind {family!r}"
    return str(values.dtype)


_KIND_FAMILY = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "datetime",
                "U": "string", "S": "binary"}
_INFERRED_FAMILY = {"string": "string", "bytes": "binary", "integer": "int",
                    "floating": "float", "mixed-integer-float": "float", "boolean": "bool",
                    "date": "datetime", "datetime": "datetime", "datetime64": "datetime"}


def _family(values: Any, spec: ColumnSpec) -> str:
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if dtype.kind != "O":
        return _KIND_FAMILY.get(dtype.kind) or str(dtype)
    inferred = str(pd.api.types.infer_dtype(values, skipna=True))
    if inferred == "empty":  # every value is null: fits any family; nullability decides
        return spec.type.family
    return _INFERRED_FAMILY.get(inferred, inferred)


def _nulls(values: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(pd.isna(values), dtype=bool)


def _refuse_nulls(mask: np.ndarray[Any, Any] | None, spec: ColumnSpec) -> None:
    if mask is not None and not spec.nullable and mask.any():
        raise _Mismatch(f"{int(mask.sum())} null value(s), but the column is not nullable")


# Values already in the spec's dtype only need their nulls (and object kinds) checked.
def _same_objects(values: Any, spec: ColumnSpec) -> Any:
    nulls = _nulls(values)
    _refuse_nulls(nulls, spec)
    if nulls.any():  # NaN/NA/NaT from pandas readers: the model sees one null, None
        values = values.copy()
        values[nulls] = None
    return values


def _same_masked_or_plain(values: Any, spec: ColumnSpec) -> Any:
    if isinstance(values, pd.api.extensions.ExtensionArray):
        _refuse_nulls(np.asarray(values.isna()), spec)
    return values


_UNCHANGED: dict[str, Callable[[Any, ColumnSpec], Any]] = {
    "string": _same_objects, "binary": _same_objects,
    "int": _same_masked_or_plain, "bool": _same_masked_or_plain,
    "float": _same_masked_or_plain,
}


def _split(values: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Data and null mask of a numeric column; masked slots of the data hold 0."""
    if values.dtype == object:  # Python ints/floats/bools with None: let pandas type them
        values = pd.array(values)
    if isinstance(values, pd.api.extensions.ExtensionArray):
        mask = np.asarray(values.isna(), dtype=bool)
        numpy_dtype = getattr(values.dtype, "numpy_dtype", None)
        data = values.to_numpy(dtype=numpy_dtype, na_value=0 if mask.any() else None) \
            if numpy_dtype is not None else np.asarray(values)
        return data, mask
    return values, None


def _convert_numeric(values: Any, spec: ColumnSpec) -> Any:
    data, mask = _split(values)
    _refuse_nulls(mask, spec)
    cast = _lossless(data, spec.numpy, spec.type.family)
    if not spec.nullable:
        return cast
    if isinstance(spec.dtype, np.dtype):  # nullable floats: NaN marks a null
        if mask is not None and mask.any():
            cast = cast.copy() if cast is data else cast
            cast[mask] = np.nan
        return cast
    return pd.array(cast, dtype=spec.dtype) if mask is None else \
        _masked(cast, mask, spec)


def _masked(data: np.ndarray[Any, Any], mask: np.ndarray[Any, Any], spec: ColumnSpec) -> Any:
    if spec.type.family == "bool":
        return pd.arrays.BooleanArray(data, mask)
    return pd.arrays.IntegerArray(data, mask)


def _lossless(data: np.ndarray[Any, Any], target: np.dtype[Any],
              family: str) -> np.ndarray[Any, Any]:
    """``data`` as ``target``, or ``_Mismatch`` if any value would change."""
    if data.dtype == target:
        return data
    if target in _WIDENINGS.get(data.dtype, ()):
        return data.astype(target)
    if family == "int":
        low, high = _int_range(target)
        # The ufuncs' own reduce: what .min()/.max() run, without their Python wrappers.
        if len(data) and (np.minimum.reduce(data) < low or np.maximum.reduce(data) > high):
            raise _Mismatch(f"values {data.min()}..{data.max()} do not fit in {target.name}")
        return data.astype(target)
    cast = data.astype(target)
    if not np.array_equal(cast.astype(data.dtype), data, equal_nan=family == "float"):
        raise _Mismatch(f"{data.dtype} values do not all convert exactly to {target.name}")
    return cast


@cache
def _int_range(dtype: np.dtype[Any]) -> tuple[int, int]:
    """The smallest and largest value of an integer dtype (``np.iinfo`` is slow per request)."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _numpy(name: str) -> np.dtype[Any]:
    return np.dtype(COLUMN_TYPES[name].numpy if name in COLUMN_TYPES else TENSOR_DTYPES[name].numpy)


# The table's safe casts (``widens_to``), keyed by numpy dtype for the hot path.
_WIDENINGS: dict[np.dtype[Any], frozenset[np.dtype[Any]]] = {
    np.dtype(numpy): frozenset(_numpy(w) for w in widens_to)
    for numpy, widens_to in [*((r.numpy, r.widens_to) for r in COLUMN_TYPES.values()),
                             *((r.numpy, r.widens_to) for r in TENSOR_DTYPES.values())]
    if np.dtype(numpy) != object
}


def _convert_text(values: Any, spec: ColumnSpec) -> Any:
    if isinstance(values.dtype, pd.StringDtype):
        values = values.to_numpy(dtype=object, na_value=None)
    elif values.dtype.kind in "US":
        values = values.astype(object)
    return _same_objects(values, spec)


def _convert_datetime(values: Any, spec: ColumnSpec) -> Any:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.tz_convert("UTC").tz_localize(None)
    if values.dtype == object:  # datetime.date / datetime.datetime objects
        values = np.array(values, dtype="datetime64[us]")
    data = np.asarray(values)
    mask = np.isnat(data)
    _refuse_nulls(mask, spec)
    cast = data.astype(spec.numpy)
    if not np.array_equal(cast.astype(data.dtype)[~mask], data[~mask]):
        unit = "whole days" if spec.type.name == "date" else "microseconds"
        raise _Mismatch(f"{data.dtype} values are not all {unit} ({spec.type.name})")
    return cast.astype(spec.dtype)


_CONVERT: dict[str, Callable[[Any, ColumnSpec], Any]] = {
    "int": _convert_numeric, "float": _convert_numeric, "bool": _convert_numeric,
    "string": _convert_text, "binary": _convert_text, "datetime": _convert_datetime,
}


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
    arrays, problems = _conform_tensors(tensors, specs, "input")
    if problems:
        raise InputError(problems)
    return arrays


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
    arrays, problems = _conform_tensors(tensors, specs, "output")
    if problems:
        raise OutputError(problems)
    return arrays


def _conform_tensors(tensors: Mapping[str, Any], specs: Sequence[TensorSpec],
                     role: str) -> tuple[dict[str, np.ndarray[Any, Any]], list[str]]:
    # Runs twice per request (inputs, outputs): the common case of exactly the spec's tensors
    # with the spec's dtypes costs a lookup, a shape and a dtype comparison per tensor.
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    problems: list[str] = []
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
        try:
            arrays[spec.name] = _conform_tensor(np.asarray(value), spec)
        except _Mismatch as exc:
            problems.append(f"{spec.name}: {exc}")
    if len(tensors) > present:
        names = {s.name for s in specs}
        problems[:0] = [f"{name}: unexpected {role} tensor (the spec has no such {role})"
                        for name in tensors if name not in names]
    return arrays, problems


def _conform_tensor(array: np.ndarray[Any, Any], spec: TensorSpec) -> np.ndarray[Any, Any]:
    shape = array.shape
    if shape != spec.shape and not _fits(shape, spec.shape):
        raise _Mismatch(f"shape {list(array.shape)} does not match {list(spec.shape)}"
                        " (-1 = any size)")
    if array.dtype == spec.dtype:
        return array
    family = _KIND_FAMILY.get(array.dtype.kind) or str(array.dtype)
    if family != spec.type.family:
        raise _Mismatch(f"expected dtype {spec.type.name}, got {array.dtype}"
                        " (only lossless conversions are applied)")
    if array.ndim == 0:
        return _lossless(array.reshape(1), spec.dtype, family).reshape(())
    return _lossless(array.reshape(-1), spec.dtype, family).reshape(array.shape)


def _fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    if len(shape) != len(wanted):
        return False
    for got, want in zip(shape, wanted, strict=True):
        if want != -1 and want != got:
            return False
    return True
