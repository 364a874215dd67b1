"""Codecs between the wire (typed proto, files, JSON) and the columns/tensors ``Predictor`` takes.

Shared by the server, the batch driver and ``pymlc predict``, so that every path decodes the same
way. Decoders produce values in their *wire* dtype (an int8 column arrives as int32) and leave
conversion to the spec's dtype to ``checks``; only what the wire cannot say (nulls, dates as
day counts, timestamps as microsecond counts) is interpreted here. The typed proto's encoding is
described in ``types``: a ``<T>Column{values, nulls}`` field per column,
``Tensor{shape, data}`` with raw little-endian bytes decoded by ``np.frombuffer`` (no copy; the
arrays are read-only).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from google.protobuf import unknown_fields

from .checks import ColumnSpec, DecodedObjects, InputError, TensorSpec
from .wire import block_field

__all__ = [
    "columns_from_typed",
    "decoded_objects",
    "frame_to_records",
    "read_columns",
    "read_tensors",
    "tensors_from_typed",
    "tensors_to_json",
    "to_wire",
    "typed_from_columns",
    "typed_from_frame",
    "wire_array",
    "typed_from_tensors",
    "wire_to_values",
    "with_nulls",
]

_EPOCH_UNIT = {"date": "datetime64[D]", "timestamp": "datetime64[us]"}
# The UTC offset that ends an ISO 8601 date-time: Z, +hh, +hhmm or +hh:mm after the time.
_OFFSET = re.compile(r"[T ][^+-]*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)\s*$")


# --- typed proto ------------------------------------------------------------------------------

def columns_from_typed(message: Any, specs: Sequence[ColumnSpec]) -> dict[str, Any]:
    """Decode a typed ``PredictRequest`` (or ``PredictResponse``) of a dataframe model.

    Args:
        message: the parsed message.
        specs: its columns, from ``checks.column_specs``.

    Returns:
        Column name -> values in wire dtype with nulls applied (string and binary columns as
        ``checks.DecodedObjects``). A column the client did not set is left out: the checks
        refuse it, or take a nullable input as all null (an older client's request).

    Raises:
        InputError: unknown field numbers, or a column whose null flags do not match its values.
    """
    _refuse_unknown(message)
    columns: dict[str, Any] = {}
    problems: list[str] = []
    blocks: dict[int, Any] = {}
    for spec in specs:
        try:
            values = _typed_column(_block(message, spec.block, blocks) if spec.block else message,
                                   spec)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if values is not None:
            columns[spec.name] = values
    for block in blocks.values():
        if block is not None:
            _refuse_unknown(block)
    if problems:
        raise InputError(problems)
    return columns


def _block(message: Any, block: int, found: dict[int, Any]) -> Any:
    """Block ``block`` of a wide message (see ``wire``), None when the client left it out."""
    if block not in found:
        name = block_field(block)
        found[block] = getattr(message, name) if message.HasField(name) else None
    return found[block]


def _refuse_unknown(message: Any) -> None:
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        numbers = sorted({field.field_number for field in unknown})
        raise InputError([f"field number {n}: unknown to this model's {type(message).__name__}"
                          " (a newer client, or a field sent with the wrong type)"
                          for n in numbers])


def _typed_column(message: Any, spec: ColumnSpec) -> Any:
    if message is None or not message.HasField(spec.name):
        return None
    column = getattr(message, spec.name)
    if len(unknown_fields.UnknownFieldSet(column)):  # e.g. another message's bytes
        numbers = sorted({field.field_number for field in unknown_fields.UnknownFieldSet(column)})
        raise InputError([f"{spec.name}: field number(s) {', '.join(map(str, numbers))} are"
                          f" unknown to {type(column).__name__} (a field sent with the wrong"
                          " type?)"])
    values = wire_to_values(_repeated(column.values, spec.type.proto_numpy), spec)
    if spec.type.family == "float" and values.dtype != spec.numpy:
        # float32 travels as double; round to float32 as a `float` field would have.
        values = values.astype(spec.numpy)
    flags = column.nulls
    count = len(flags)
    if count and count != len(values):
        raise InputError([f"{spec.name}: {count} null flags for {len(values)} values;"
                          " `nulls` must be empty or have one flag per value"])
    nulls = np.fromiter(flags, bool, count) if count else None
    if values.dtype == object:  # str from a `string` field, bytes from a `bytes` field
        return decoded_objects(values, nulls, spec.type.family)
    return values if nulls is None else with_nulls(values, nulls, spec)


def _repeated(container: Any, numpy: str) -> np.ndarray[Any, Any]:
    # numpy arguments by position on the request path: numpy's keyword parsing costs as much
    # as a 1-row fromiter itself.
    if numpy == "object":  # strings/bytes: a list first is far faster than iterating
        return np.array(list(container), object)
    return np.fromiter(container, numpy, len(container))


def wire_to_values(values: np.ndarray[Any, Any], spec: ColumnSpec) -> np.ndarray[Any, Any]:
    """Interpret integer dates (days) and timestamps (microseconds since the epoch, UTC).

    Args:
        values: one column as it traveled.
        spec: the column.

    Returns:
        ``values`` as datetime64 for date/timestamp columns sent as integers, else unchanged.
    """
    unit = _EPOCH_UNIT.get(spec.type.name)
    if unit is None or values.dtype.kind not in "iu":
        return values
    return values.astype(np.int64).view(unit)


def decoded_objects(values: np.ndarray[Any, Any], nulls: np.ndarray[Any, Any] | None,
                    family: str) -> DecodedObjects:
    """A decoded string or binary column for the checks, which then need not walk it again.

    Args:
        values: the column as a decoder just built it, only ``str`` ("string") or only
            ``bytes`` ("binary") values; marked in place, so never an array someone else holds.
        nulls: one flag per value, or None (no nulls).
        family: "string" or "binary", what ``values`` holds.

    Returns:
        ``values`` with None where null, and what the decoder knows about them.
    """
    if nulls is not None and not nulls.any():
        nulls = None
    if nulls is not None:
        values[nulls] = None
    return DecodedObjects(values, nulls, family)


def with_nulls(values: np.ndarray[Any, Any], nulls: np.ndarray[Any, Any],
               spec: ColumnSpec) -> Any:
    """Mark ``nulls`` in ``values``: None, NaN, NaT, or a pandas masked array for ints/bools.

    Args:
        values: one column, with any value where null.
        nulls: one flag per value.
        spec: the column (its type picks the representation of null).

    Returns:
        The column with its nulls marked.
    """
    if not nulls.any():
        return values
    kind = values.dtype.kind
    if kind in "iu":
        return pd.arrays.IntegerArray(values, nulls)
    if kind == "b":
        return pd.arrays.BooleanArray(values, nulls)
    marked = values.copy()
    marked[nulls] = {"f": np.nan, "M": np.datetime64("NaT")}.get(kind)
    return marked


def typed_from_frame(message: Any, frame: pd.DataFrame, specs: Sequence[ColumnSpec]) -> Any:
    """Fill a typed message from a DataFrame in the spec's dtypes (see ``checks``).

    Args:
        message: an empty ``PredictRequest`` or ``PredictResponse``.
        frame: one column per spec, already conformed.
        specs: the message's columns.

    Returns:
        ``message``, filled.
    """
    return typed_from_columns(message, {s.name: frame[s.name].array for s in specs}, specs)


def typed_from_columns(message: Any, columns: Mapping[str, Any],
                       specs: Sequence[ColumnSpec]) -> Any:
    """Fill a typed message from conformed column arrays (numpy or pandas arrays).

    Args:
        message: an empty ``PredictRequest`` or ``PredictResponse``.
        columns: one array per spec, in the spec's dtype.
        specs: the message's columns.

    Returns:
        ``message``, filled.
    """
    for spec in specs:
        values = columns[spec.name]
        nulls = np.asarray(pd.isna(values), dtype=bool) if spec.nullable else None
        holder = getattr(message, block_field(spec.block)) if spec.block else message
        column = getattr(holder, spec.name)
        column.SetInParent()  # present even with zero rows
        column.values.extend(to_wire(values, spec, nulls))
        if nulls is not None and nulls.any():
            column.nulls.extend(nulls.tolist())
    return message


def to_wire(values: Any, spec: ColumnSpec, nulls: np.ndarray[Any, Any] | None) -> list[Any]:
    """One conformed column as a list of typed-proto values, a default where null.

    Args:
        values: the column (numpy or pandas array) in the spec's dtype.
        spec: the column.
        nulls: its null flags (None: not nullable).

    Returns:
        Python values of the column's proto type (dates as days, timestamps as microseconds).
    """
    wire: list[Any] = wire_array(values, spec, spec.type.proto_numpy, nulls).tolist()
    return wire


def wire_array(values: Any, spec: ColumnSpec, numpy: str,
               nulls: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
    """A conformed column as a numpy array of ``numpy`` (epoch counts for dates/timestamps)."""
    if numpy == "object":
        data = np.asarray(values, dtype=object)
        if nulls is not None and nulls.any():
            data = np.where(nulls, b"" if spec.type.family == "binary" else "", data)
        return data
    if spec.type.family == "datetime":
        data = np.asarray(values).astype(_EPOCH_UNIT[spec.type.name]).view(np.int64)
    elif isinstance(values, pd.api.extensions.ExtensionArray):
        data = values.to_numpy(dtype=numpy, na_value=0)
    else:
        data = np.asarray(values)
    if nulls is not None and nulls.any():
        data = np.where(nulls, 0, data)
    return np.asarray(data, dtype=numpy)


def tensors_from_typed(message: Any, specs: Sequence[TensorSpec]) -> dict[str, Any]:
    """Decode the ``Tensor{shape, data}`` fields of a typed tensor message, without copying.

    Args:
        message: the parsed message.
        specs: its tensors, from ``checks.tensor_specs``.

    Returns:
        Tensor name -> read-only array of the spec's dtype; unset tensors are left out.

    Raises:
        InputError: unknown fields, or bytes that do not hold the given shape.
    """
    _refuse_unknown(message)
    tensors: dict[str, Any] = {}
    problems: list[str] = []
    for spec in specs:
        if not message.HasField(spec.name):
            continue
        tensor = getattr(message, spec.name)
        try:
            tensors[spec.name] = from_bytes(tensor.data, spec.dtype, tuple(tensor.shape))
        except ValueError as exc:
            problems.append(f"{spec.name}: {exc}")
    if problems:
        raise InputError(problems)
    return tensors


def from_bytes(data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """Raw little-endian row-major bytes as an array of ``shape``, without a copy.

    Raises:
        ValueError: the byte count does not match the shape and dtype.
    """
    # This runs on every request: numpy checks the byte count itself (numpy arguments by
    # position: faster), and the reasons are worked out only when it refuses.
    try:
        array = np.frombuffer(data, dtype).reshape(shape)
    except ValueError:
        array = None
    if array is not None and array.shape == shape:  # not a -1 that numpy filled in
        return array
    if min(shape, default=0) < 0:
        raise ValueError(f"shape {list(shape)} has a negative dimension")
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{len(data)} bytes do not hold shape {list(shape)} of {dtype.name}"
                         f" ({count * dtype.itemsize} bytes)")
    return np.frombuffer(data, dtype).reshape(shape)  # numpy's own refusal (too many dims)


def typed_from_tensors(message: Any, tensors: Mapping[str, np.ndarray[Any, Any]],
                       specs: Sequence[TensorSpec]) -> Any:
    """Fill a typed tensor message: shapes, and raw little-endian bytes of the spec's dtype.

    Args:
        message: an empty ``PredictRequest`` or ``PredictResponse``.
        tensors: one array per spec.
        specs: the message's tensors.

    Returns:
        ``message``, filled.
    """
    for spec in specs:
        array = np.ascontiguousarray(tensors[spec.name], spec.dtype)  # dtype by position: faster
        tensor = getattr(message, spec.name)
        tensor.shape.extend(array.shape)
        tensor.data = array.tobytes()
    return message


# --- files and JSON ---------------------------------------------------------------------------

def read_columns(path: Path, specs: Sequence[ColumnSpec]) -> dict[str, Any]:
    """Read dataframe inputs from JSON records (or ``{column: [values]}``), CSV or Parquet.

    JSON values are decoded straight into the spec's dtypes: ``1`` is a float for a float
    column, dates are ISO strings (``2024-05-01``), timestamps ISO date-times (UTC unless an
    offset is given), binary values base64.

    Args:
        path: the file; its suffix picks the format.
        specs: the spec's inputs.

    Returns:
        Column name -> values, for ``Predictor.predict_columns``.

    Raises:
        InputError: the file is not of a supported format or a value cannot be decoded.
    """
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _json_columns(json.loads(path.read_text(encoding="utf-8")), specs)
    if suffix == ".csv":
        frame = pd.read_csv(path, dtype=_csv_dtypes(specs), keep_default_na=True)
        return {str(c): _from_text(frame[c], _by_name(specs).get(str(c))) for c in frame.columns}
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
        return {str(c): frame[c] for c in frame.columns}
    raise InputError([f"{path}: unsupported input format {suffix!r} for a dataframe model;"
                      " use .json, .csv or .parquet"])


def _by_name(specs: Sequence[ColumnSpec]) -> dict[str, ColumnSpec]:
    return {s.name: s for s in specs}


def _csv_dtypes(specs: Sequence[ColumnSpec]) -> dict[str, Any]:
    # Masked dtypes let the reader keep empty cells as nulls; the checks refuse them later
    # where the spec does not allow nulls. Dates/timestamps/binary are parsed from text.
    return {s.name: _csv_dtype(s) for s in specs}


def _csv_dtype(spec: ColumnSpec) -> str:
    family = spec.type.family
    if family == "int":  # read wide; the checks narrow with a message naming the column
        return "Int64"
    if family == "float":
        return spec.type.numpy
    return "boolean" if family == "bool" else "object"


def _from_text(column: pd.Series, spec: ColumnSpec | None) -> Any:
    if spec is None or spec.type.family not in ("datetime", "binary"):
        return column
    values = column.to_numpy(dtype=object)
    return _json_values([None if pd.isna(v) else v for v in values], spec)


def _json_columns(data: Any, specs: Sequence[ColumnSpec]) -> dict[str, Any]:
    if isinstance(data, dict):
        raw = {str(k): list(v) if isinstance(v, list) else [v] for k, v in data.items()}
    elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
        names = list(dict.fromkeys(k for record in data for k in record))
        raw = {name: [record.get(name) for record in data] for name in names}
    else:
        raise InputError(["JSON input must be a list of records ({column: value}) or an object"
                          " of columns ({column: [values]})"])
    by_name = _by_name(specs)
    columns, problems = {}, []
    for name, values in raw.items():
        try:
            spec = by_name.get(name)
            columns[name] = _json_values(values, spec) if spec else np.array(values, dtype=object)
        except (ValueError, TypeError, OverflowError) as exc:
            problems.append(f"{name}: cannot decode JSON values: {exc}")
    if problems:
        raise InputError(problems)
    return columns


def _json_values(values: list[Any], spec: ColumnSpec) -> Any:
    nulls = np.array([v is None for v in values], dtype=bool)
    present = [v for v in values if v is not None]
    family = spec.type.family
    if family == "float":  # straight into the spec's dtype: 0.1 is the nearest float32
        data = np.array([np.nan if v is None else v for v in values], dtype=spec.numpy)
        return pd.arrays.FloatingArray(data, nulls) if nulls.any() and not spec.nullable \
            else data
    if family == "int":  # natural dtype; the checks refuse floats and values out of range
        if any(isinstance(v, bool) or not isinstance(v, int) for v in present):
            raise ValueError(f"expected integers for {spec.type.name}")
        return pd.array(values, dtype="Int64") if nulls.any() else np.array(values, np.int64)
    if family == "datetime":
        return _json_times(values)
    if family == "binary":
        return np.array([None if v is None else base64.b64decode(v, validate=True)
                         for v in values], dtype=object)
    if family == "bool":
        if any(not isinstance(v, bool) for v in present):
            raise ValueError("expected true or false")
        return pd.array(values, dtype="boolean") if nulls.any() else np.array(values, dtype=bool)
    return np.array(values, dtype=object)


def _json_times(values: list[Any]) -> Any:
    # pandas gives a zone-less value that follows one with an offset that offset, not UTC:
    # parse the two kinds apart.
    text = pd.Series(values, dtype=object)
    zoned = text.map(lambda v: isinstance(v, str) and _OFFSET.search(v) is not None)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    for part in (zoned, ~zoned):
        if part.any():
            parsed[part] = pd.to_datetime(text[part], utc=True, format="ISO8601")
    # Dates too arrive at microsecond precision: the checks accept them only at midnight.
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def read_tensors(path: Path, specs: Sequence[TensorSpec]) -> dict[str, Any]:
    """Read tensor inputs from JSON (``{name: nested list}``) or ``.npz``.

    Args:
        path: the file; its suffix picks the format.
        specs: the spec's inputs; JSON floats decode straight into their dtype.

    Returns:
        Tensor name -> array, for ``Predictor.predict_tensors``.

    Raises:
        InputError: the format is not supported or the JSON is not an object of arrays.
    """
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    if suffix != ".json":
        raise InputError([f"{path}: unsupported input format {suffix!r} for a tensor model;"
                          " use .json or .npz"])
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise InputError(["JSON input of a tensor model must be an object {name: nested list}"])
    by_name = {s.name: s for s in specs}
    return {str(name): _json_tensor(value, by_name.get(str(name)))
            for name, value in data.items()}


def _json_tensor(value: Any, spec: TensorSpec | None) -> np.ndarray[Any, Any]:
    if spec is not None and spec.type.family == "float":
        return np.array(value, dtype=spec.dtype)
    return np.array(value)


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Output rows as JSON-ready records: null for nulls and NaN, ISO dates, base64 bytes.

    Args:
        frame: outputs in the spec's dtypes.

    Returns:
        One dict per row.
    """
    columns = {str(name): _json_ready(frame[name]) for name in frame.columns}
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _json_ready(column: pd.Series) -> list[Any]:
    kind = column.dtype.kind
    nulls = np.asarray(column.isna(), dtype=bool)
    if kind == "M":
        text = np.datetime_as_string(column.to_numpy(), unit="auto")
        values: list[Any] = [t if "T" not in t else t + "Z" for t in text.tolist()]
    elif kind == "O":
        values = [base64.b64encode(v).decode() if isinstance(v, bytes) else v
                  for v in column.tolist()]
    else:
        values = column.to_numpy(dtype=object).tolist()
    return [None if null else v for v, null in zip(values, nulls.tolist(), strict=True)]


def tensors_to_json(tensors: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Tensors as ``{name: nested list}``.

    Args:
        tensors: arrays by name.

    Returns:
        A JSON-ready dict.
    """
    return {name: array.tolist() for name, array in tensors.items()}
