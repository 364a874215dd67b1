"""The Open Inference Protocol v2 (``inference.GRPCInferenceService``): codec and service.

Existing OIP clients (tritonclient, KServe's) work against any pymlc model:

* a tensor model's inputs and outputs are OIP tensors of the spec's datatype and shape;
* a dataframe model's columns are 1-D tensors of shape ``[rows]``: strings and binary as BYTES,
  dates as INT32 days and timestamps as INT64 microseconds since the epoch (UTC). A column may
  come with a BOOL tensor ``<column>.nulls`` (one flag per row; absent: no nulls); nullable
  outputs always have one, any other column output when asked for by name. A nullable input
  left out of a request is null in every row.

Inputs may use ``raw_input_contents`` (what tritonclient sends) or typed ``contents``; outputs
are always raw. Conversion to the spec's dtypes is left to ``checks``, as for the typed proto.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .checks import ColumnSpec, InputError, TensorSpec
from .codecs import decoded_objects, from_bytes, wire_array, wire_to_values, with_nulls
from .config import ModelConfig
from .types import OIP_DATATYPES


def _messages() -> Any:
    """The OIP message classes: ours, or the same protocol's if another stub owns the package.

    tritonclient's stubs define the same ``inference`` messages (a superset, same field numbers)
    in another .proto file; protobuf refuses a second definition in one process, so when they
    are loaded first (a test run or a client in the same process), use theirs.
    """
    try:
        from .proto import grpc_predict_v2_pb2
    except TypeError:
        from google.protobuf import descriptor_pool, message_factory

        pool = descriptor_pool.Default()
        return SimpleNamespace(**{
            name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
            for name in _MESSAGES})
    return grpc_predict_v2_pb2


_MESSAGES = ("ServerLiveRequest", "ServerLiveResponse", "ServerReadyRequest",
             "ServerReadyResponse", "ModelReadyRequest", "ModelReadyResponse",
             "ServerMetadataRequest", "ServerMetadataResponse", "ModelMetadataRequest",
             "ModelMetadataResponse", "ModelInferRequest", "ModelInferResponse")
pb = _messages()

__all__ = [
    "NULLS_SUFFIX",
    "SERVICE",
    "columns_from_oip",
    "columns_to_oip",
    "model_metadata",
    "output_names",
    "pb",
    "tensors_from_oip",
    "tensors_to_oip",
]

SERVICE = "inference.GRPCInferenceService"
NULLS_SUFFIX = ".nulls"
_LENGTH = struct.Struct("<I")


def tensors_from_oip(request: Any) -> dict[str, np.ndarray[Any, Any]]:
    """Every input of an OIP request as a numpy array of its declared datatype and shape.

    Args:
        request: the parsed ``ModelInferRequest``.

    Returns:
        Input name -> array (BYTES as an object array of ``bytes``); raw inputs without a copy.

    Raises:
        InputError: unknown datatype, contents that do not match the shape, duplicate names, or
            ``raw_input_contents`` not matching ``inputs`` one to one.
    """
    raw = request.raw_input_contents
    if len(raw) and len(raw) != len(request.inputs):
        raise InputError([f"raw_input_contents has {len(raw)} entries for {len(request.inputs)}"
                          " inputs; send one per input, in the order of `inputs`"])
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    problems: list[str] = []
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            problems.append(f"{tensor.name}: sent twice")
            continue
        try:
            arrays[tensor.name] = _decode(tensor, raw[i] if len(raw) else None)
        except ValueError as exc:
            problems.append(f"{tensor.name}: {exc}")
    if problems:
        raise InputError(problems)
    return arrays


def _decode(tensor: Any, raw: bytes | None) -> np.ndarray[Any, Any]:
    row = OIP_DATATYPES.get(tensor.datatype)
    if row is None:
        raise ValueError(f"unknown datatype {tensor.datatype!r}; one of"
                         f" {', '.join(OIP_DATATYPES)}")
    shape = tuple(tensor.shape)
    if row.name == "BYTES":
        items = _split_bytes(raw, _count(shape)) if raw is not None \
            else list(tensor.contents.bytes_contents)
        return _shaped(np.array(items, dtype=object), shape, row.name)
    if raw is not None:
        return from_bytes(raw, np.dtype(row.numpy), shape)
    if not row.contents:
        raise ValueError(f"{row.name} travels only in raw_input_contents")
    values = getattr(tensor.contents, row.contents)
    try:
        array = np.fromiter(values, dtype=row.numpy, count=len(values))
    except OverflowError as exc:
        raise ValueError(f"{row.contents} holds values outside {row.name}: {exc}") from None
    return _shaped(array, shape, row.name)


def _shaped(array: np.ndarray[Any, Any], shape: tuple[int, ...],
            datatype: str) -> np.ndarray[Any, Any]:
    count = int(np.prod(shape, dtype=np.int64))
    if any(d < 0 for d in shape) or count != len(array):
        raise ValueError(f"{len(array)} {datatype} elements do not fill shape {list(shape)}")
    return array.reshape(shape)


def _count(shape: tuple[int, ...]) -> int:
    if any(d < 0 for d in shape):
        raise ValueError(f"shape {list(shape)} has a negative dimension")
    return math.prod(shape)


def _split_bytes(raw: bytes, count: int) -> list[bytes]:
    """The ``count`` elements of a raw BYTES tensor: each a 4-byte little-endian length, then
    the bytes. Walks no further than ``count`` elements (bounded by the server's limits), and
    refuses contents that hold fewer or more."""
    if len(raw) < 4 * count:
        raise ValueError(f"raw BYTES contents of {len(raw)} bytes cannot hold the {count:,}"
                         " elements of the shape (4 bytes of length each, at least)")
    if len(raw) == 4 * count:  # only lengths: every element must be empty
        if np.frombuffer(raw, "<u4").any():
            raise ValueError("raw BYTES contents end inside an element")
        return [b""] * count
    items: list[bytes] = [b""] * count
    unpack, offset = _LENGTH.unpack_from, 0
    for i in range(count):  # the lengths chain: each one says where the next begins
        start = offset + 4
        if start > len(raw):
            raise ValueError(f"raw BYTES contents end before the {count:,} elements of the"
                             " shape")
        offset = start + unpack(raw, offset)[0]
        items[i] = raw[start:offset]
    if offset > len(raw):
        raise ValueError("raw BYTES contents end inside an element")
    if offset < len(raw):
        raise ValueError(f"raw BYTES contents hold more than the {count:,} elements of the"
                         " shape")
    return items


def columns_from_oip(request: Any,
                     specs: Sequence[ColumnSpec]) -> dict[str, Any]:
    """The columns of a dataframe model from an OIP request (1-D tensors, ``.nulls`` flags).

    Args:
        request: the parsed ``ModelInferRequest``.
        specs: the spec's inputs.

    Returns:
        Column name -> values for ``Predictor.predict_columns`` (BYTES columns as
        ``checks.DecodedObjects``); unknown names are kept so that the checks report them, and
        inputs left out are left out (the checks refuse them, or take a nullable one as null).

    Raises:
        InputError: a tensor is not 1-D, a string is not UTF-8, or ``.nulls`` flags are malformed
            or sent without their column.
    """
    arrays = tensors_from_oip(request)
    by_name = {s.name: s for s in specs}
    columns: dict[str, Any] = {}
    problems: list[str] = []
    for name, array in arrays.items():
        spec = by_name.get(name)
        if spec is None:
            column = _nulls_of(name, by_name)
            if column is None:
                columns[name] = array
            elif column not in arrays:
                problems.append(f"{name}: sent without {column}; send the column's values too")
            continue
        try:
            columns[name] = _column(array, spec, arrays.get(name + NULLS_SUFFIX))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise InputError(problems)
    return columns


def _nulls_of(name: str, by_name: Mapping[str, ColumnSpec]) -> str | None:
    """The column whose ``.nulls`` flags ``name`` holds, if it is one."""
    column = name.removesuffix(NULLS_SUFFIX)
    return column if column != name and column in by_name else None


def _column(array: np.ndarray[Any, Any], spec: ColumnSpec,
            nulls: np.ndarray[Any, Any] | None) -> Any:
    if array.ndim != 1:
        raise ValueError(f"shape {list(array.shape)}: a column is a 1-D tensor of shape [rows]")
    held = "binary"  # what an object (BYTES) array holds
    if spec.type.family == "string" and array.dtype == object:
        try:
            array = np.array([v.decode("utf-8") for v in array], dtype=object)
        except UnicodeDecodeError as exc:
            raise ValueError(f"BYTES element is not UTF-8 text: {exc}") from None
        held = "string"
    values = wire_to_values(array, spec)
    # Flags on a non-nullable column are applied too: the checks then refuse the nulls and
    # name their rows, as for the typed service.
    if nulls is not None and (nulls.dtype != bool or nulls.shape != values.shape):
        raise ValueError(f"{spec.name}{NULLS_SUFFIX} must be BOOL of shape"
                         f" {list(values.shape)}, got {nulls.dtype} {list(nulls.shape)}")
    if values.dtype == object:  # fresh from the decoder: marked in place
        return decoded_objects(values, nulls, held)
    return values if nulls is None else with_nulls(values, nulls, spec)


def columns_to_oip(response: Any, columns: Mapping[str, Any],
                   specs: Sequence[ColumnSpec], requested: Sequence[str]) -> None:
    """Append a dataframe model's outputs to ``response`` as raw 1-D tensors.

    Args:
        response: the response being built.
        columns: the checked outputs, one array per spec.
        specs: the spec's outputs.
        requested: output names the client asked for (empty: all).
    """
    for spec in specs:
        values = columns[spec.name]
        flags = spec.name + NULLS_SUFFIX
        # A non-nullable output's flags only when asked for: a client written when the output
        # was nullable still gets them (all false).
        wanted = spec.nullable and not requested or flags in requested
        nulls = np.asarray(pd.isna(values), dtype=bool) if spec.nullable or wanted else None
        if not requested or spec.name in requested:
            _add(response, spec.name, spec.type.oip, [len(values)],
                 _column_raw(values, spec, nulls))
        if nulls is not None and wanted:
            _add(response, flags, "BOOL", [len(values)], nulls.tobytes())


def _column_raw(values: Any, spec: ColumnSpec, nulls: np.ndarray[Any, Any] | None) -> bytes:
    data = wire_array(values, spec, OIP_DATATYPES[spec.type.oip].numpy, nulls)
    if data.dtype == object:
        return _join_bytes([_as_bytes(v) for v in data.tolist()])
    return data.tobytes()


def _as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _join_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def tensors_to_oip(response: Any, tensors: Mapping[str, np.ndarray[Any, Any]],
                   specs: Sequence[TensorSpec], requested: Sequence[str]) -> None:
    """Append a tensor model's outputs to ``response`` as raw tensors.

    Args:
        response: the response being built.
        tensors: the checked outputs.
        specs: the spec's outputs.
        requested: output names the client asked for (empty: all).
    """
    for spec in specs:
        if requested and spec.name not in requested:
            continue
        array = np.ascontiguousarray(tensors[spec.name], dtype=spec.dtype)
        _add(response, spec.name, spec.type.oip, list(array.shape), array.tobytes())


def _add(response: Any, name: str, datatype: str, shape: list[int],
         raw: bytes) -> None:
    response.outputs.add(name=name, datatype=datatype, shape=shape)
    response.raw_output_contents.append(raw)


def output_names(config: ModelConfig) -> list[str]:
    """Every output name a client may request, the ``.nulls`` of every column included."""
    names = []
    for field in config.outputs:
        names.append(field.name)
        if field.shape is None:
            names.append(field.name + NULLS_SUFFIX)
    return names


def model_metadata(config: ModelConfig, datatypes: Mapping[str, str]) -> Any:
    """``ModelMetadataResponse``: every input and output with its OIP datatype and shape.

    Args:
        config: the model.
        datatypes: spec type name -> OIP datatype, from the type table.

    Returns:
        The response; a column's shape is ``[-1]``; ``.nulls`` companions are listed.
    """
    response = pb.ModelMetadataResponse(name=config.name, versions=[config.version],
                                        platform=f"pymlc_{config.kind}")
    for fields, target in ((config.inputs, response.inputs), (config.outputs, response.outputs)):
        for field in fields:
            shape = list(field.shape) if field.shape is not None else [-1]
            target.add(name=field.name, datatype=datatypes[field.type], shape=shape)
            if field.nullable and field.shape is None:
                target.add(name=field.name + NULLS_SUFFIX, datatype="BOOL", shape=[-1])
    return response
