"""Values into the spec's dtype, losslessly: the per-column conversions behind ``checks``.

A value of the right family converts to the spec's dtype when no value changes on the way (a
safe widening from the type table, or a narrowing whose every value fits); anything else raises
``Mismatch``, never a silent cast. Nulls are refused where the column is not nullable, NaN
counting as null in float columns (pandas cannot tell them apart). ``checks`` collects the
mismatches of every field and words them; the row-wise ones carry the offending values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .types import COLUMN_TYPES, TENSOR_DTYPES

if TYPE_CHECKING:
    from .checks import ColumnSpec

__all__ = ["KIND_FAMILY", "Mismatch", "all_null", "conform_values", "describe", "lossless",
           "refuse_nulls"]


class Mismatch(Exception):
    """One field's problem, raised inside a converter and collected by the caller.

    ``bad`` flags the offending values of a row-wise problem (None: not row-wise); the caller
    turns it into row positions, since only it knows what a row is (a tensor's first axis).
    """

    def __init__(self, message: str, bad: np.ndarray[Any, Any] | None = None) -> None:
        super().__init__(message)
        self.bad = bad


def describe(spec: ColumnSpec) -> str:
    """The column's type as messages show it: ``string, nullable``."""
    return spec.type.name + (", nullable" if spec.nullable else "")


def conform_values(values: Any, spec: ColumnSpec) -> Any:
    """One column (a numpy or pandas array) in the spec's dtype, or ``Mismatch``."""
    if values.ndim != 1:
        raise Mismatch(f"expected one value per row, got an array of shape {values.shape}")
    family = spec.type.family
    same = _UNCHANGED.get(family) if values.dtype == spec.dtype else None
    if same is not None and family not in ("string", "binary"):  # the hot path: dtype says all
        return same(values, spec)
    given = _family(values, spec)
    if given != family:
        raise Mismatch(f"expected {describe(spec)}, got {_shown_dtype(values, given)}"
                       " (only lossless conversions are applied)")
    return same(values, spec) if same is not None else _CONVERT[family](values, spec)


def _shown_dtype(values: Any, family: str) -> str:
    if values.dtype == object:
        return f"values of kind {family!r}"
    return str(values.dtype)


KIND_FAMILY = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "datetime",
                "U": "string", "S": "binary"}
_INFERRED_FAMILY = {"string": "string", "bytes": "binary", "integer": "int",
                    "floating": "float", "mixed-integer-float": "float", "boolean": "bool",
                    "date": "datetime", "datetime": "datetime", "datetime64": "datetime"}


def _family(values: Any, spec: ColumnSpec) -> str:
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if dtype.kind != "O":
        return KIND_FAMILY.get(dtype.kind) or str(dtype)
    inferred = str(pd.api.types.infer_dtype(values, skipna=True))
    if inferred == "empty":  # every value is null: fits any family; nullability decides
        return spec.type.family
    return _INFERRED_FAMILY.get(inferred, inferred)


def _nulls(values: Any) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.asarray(pd.isna(values), dtype=bool)


def refuse_nulls(mask: np.ndarray[Any, Any] | None, spec: ColumnSpec) -> None:
    """``Mismatch`` naming the null rows of ``mask`` when the column is not nullable."""
    if mask is not None and not spec.nullable and mask.any():
        what = "null or NaN" if spec.type.family == "float" else "null"
        raise Mismatch(f"{int(mask.sum())} {what} value(s), but the column is not nullable",
                       mask)


def _nan_or_null(data: np.ndarray[Any, Any],
                 mask: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any] | None:
    """The nulls of a float column: NaN too, which pandas cannot tell from null."""
    # One reduction finds no NaN without a mask array: the minimum of values with a NaN is NaN.
    if not len(data) or not math.isnan(np.minimum.reduce(data, None)):
        return mask
    nan: np.ndarray[Any, Any] = np.isnan(data)
    return nan if mask is None else mask | nan


# Values already in the spec's dtype only need their nulls (and object kinds) checked.
def _same_objects(values: Any, spec: ColumnSpec) -> Any:
    nulls = _nulls(values)
    refuse_nulls(nulls, spec)
    if nulls.any():  # NaN/NA/NaT from pandas readers: the model sees one null, None
        values = values.copy()
        values[nulls] = None
    return values


def _same_masked_or_plain(values: Any, spec: ColumnSpec) -> Any:
    if isinstance(values, pd.api.extensions.ExtensionArray):
        refuse_nulls(np.asarray(values.isna()), spec)
    return values


def _same_floats(values: Any, spec: ColumnSpec) -> Any:
    if not spec.nullable:  # a float dtype is numpy's: NaN is its only null
        refuse_nulls(_nan_or_null(values, None), spec)
    return values


_UNCHANGED: dict[str, Callable[[Any, ColumnSpec], Any]] = {
    "string": _same_objects, "binary": _same_objects,
    "int": _same_masked_or_plain, "bool": _same_masked_or_plain,
    "float": _same_floats,
}


def _split(values: Any,
           family: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Data and null mask of a numeric column; masked slots of the data hold 0."""
    if values.dtype == object:  # Python ints/floats/bools with None: let pandas type them
        values = pd.array(values)
        if isinstance(values, pd.arrays.NumpyExtensionArray):  # nulls only: nothing to type
            values = pd.array(values, dtype=_MASKED[family])
    if isinstance(values, pd.api.extensions.ExtensionArray):
        mask = np.asarray(values.isna(), dtype=bool)
        numpy_dtype = getattr(values.dtype, "numpy_dtype", None)
        data = values.to_numpy(dtype=numpy_dtype, na_value=0 if mask.any() else None) \
            if numpy_dtype is not None else np.asarray(values)
        return data, mask
    return values, None


_MASKED = {"int": "Int64", "float": "Float64", "bool": "boolean"}


def _convert_numeric(values: Any, spec: ColumnSpec) -> Any:
    data, mask = _split(values, spec.type.family)
    if spec.type.family == "float" and not spec.nullable:
        mask = _nan_or_null(data, mask)
    refuse_nulls(mask, spec)
    cast = lossless(data, spec.numpy, spec.type.family)
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


def lossless(data: np.ndarray[Any, Any], target: np.dtype[Any],
             family: str) -> np.ndarray[Any, Any]:
    """``data`` as ``target``, or ``Mismatch`` if any value would change."""
    if data.dtype == target:
        return data
    if target in _WIDENINGS.get(data.dtype, ()):
        return data.astype(target)
    if family == "int":
        low, high = _int_range(target)
        # The ufuncs' own reduce: what .min()/.max() run, without their Python wrappers.
        if len(data) and (np.minimum.reduce(data) < low or np.maximum.reduce(data) > high):
            raise Mismatch(f"values {data.min()}..{data.max()} do not fit in {target.name}",
                           (data < low) | (data > high))
        return data.astype(target)
    cast = data.astype(target)
    if not np.array_equal(cast.astype(data.dtype), data, equal_nan=family == "float"):
        changed = cast.astype(data.dtype) != data
        if family == "float":
            changed &= ~np.isnan(data)
        raise Mismatch(f"{data.dtype} values do not all convert exactly to {target.name}",
                       changed)
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
    refuse_nulls(mask, spec)
    cast = data.astype(spec.numpy)
    if not np.array_equal(cast.astype(data.dtype)[~mask], data[~mask]):
        unit = "whole days" if spec.type.name == "date" else "microseconds"
        raise Mismatch(f"{data.dtype} values are not all {unit} ({spec.type.name})",
                       (cast.astype(data.dtype) != data) & ~mask)
    return cast.astype(spec.dtype)


_CONVERT: dict[str, Callable[[Any, ColumnSpec], Any]] = {
    "int": _convert_numeric, "float": _convert_numeric, "bool": _convert_numeric,
    "string": _convert_text, "binary": _convert_text, "datetime": _convert_datetime,
}


def all_null(spec: ColumnSpec, rows: int) -> Any:
    """A column of ``rows`` nulls, represented as the model sees a nullable column."""
    if not isinstance(spec.dtype, np.dtype):  # masked Int*/boolean
        return _masked(np.zeros(rows, spec.numpy), np.ones(rows, dtype=bool), spec)
    null = {"f": np.nan, "M": np.datetime64("NaT")}.get(spec.dtype.kind)
    return np.full(rows, null, dtype=spec.dtype)
