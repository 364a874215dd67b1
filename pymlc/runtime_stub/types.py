"""The one type table: each spec column type and tensor dtype, in every representation.

Every other module (compiler emitters and runtime codecs alike) reads these rows; none of them
knows a mapping of its own. Representations are plain strings so that the table needs no
third-party import: the runtime turns them into numpy/pandas/Arrow objects where it needs them.

Wire encodings (documented for client authors):
  * dataframe columns travel column-wise, each as a ``<T>Column{values, nulls}`` message of
    its ``proto`` scalar type, nullable or not; ``date`` is days since 1970-01-01 and
    ``timestamp`` microseconds since the epoch (UTC); int8/int16 travel as int32 and float32
    as double (both exact), so every widening that ``widens_to`` allows keeps the wire format;
  * tensors travel as ``Tensor{shape, data}``, ``data`` being the raw little-endian,
    row-major bytes of the array, so decoding is a zero-copy ``np.frombuffer``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMN_TYPES",
    "OIP_DATATYPES",
    "TENSOR_DTYPES",
    "ColumnType",
    "OipDatatype",
    "TensorDtype",
]


@dataclass(frozen=True)
class ColumnType:
    """How one dataframe column type is represented everywhere.

    Attributes:
        name: the spec's type name (``float64``).
        numpy: numpy dtype of a non-nullable column.
        pandas_nullable: pandas dtype used when the column is nullable.
        arrow: pyarrow type factory name, with arguments after ``:`` (``timestamp:us:UTC``).
        spark: Spark SQL type name.
        proto: protobuf scalar type of one value on the wire.
        json: JSON Schema of one value (without null).
        oip: Open Inference Protocol v2 datatype.
        widens_to: wider types of the same family (int8 -> int64, float32 -> float64); a
            value converts to them without loss, so they are the "safe casts" of input checks
            and the compatible input changes of ``pymlc diff``.
        family: values of one family convert into each other when every value survives the
            round trip (``int``, ``float``, ``bool``, ``string``, ``binary``, ``datetime``);
            across families the runtime never casts.
        proto_numpy: numpy dtype of the column's values as they travel in the typed proto
            (int8 travels as int32, a date as int32 days, a timestamp as int64 microseconds).
    """

    name: str
    numpy: str
    pandas_nullable: str
    arrow: str
    spark: str
    proto: str
    json: tuple[tuple[str, object], ...]
    oip: str
    widens_to: tuple[str, ...] = ()
    family: str = ""
    proto_numpy: str = ""


@dataclass(frozen=True)
class TensorDtype:
    """How one tensor dtype is represented everywhere.

    Attributes:
        name: the spec's dtype name (``float32``).
        numpy: numpy dtype, little-endian.
        json: JSON Schema of one element.
        oip: Open Inference Protocol v2 datatype.
        widens_to: dtypes an array of this dtype converts to without loss.
        family: as for columns: ``int`` (signed and unsigned), ``float`` or ``bool``.
        spark: Spark SQL type of one element (the innermost type of a batch job's nested
            ``ARRAY<...>`` column). Spark has no unsigned or half-precision types, so uint8
            and float16 map to the narrowest Spark type that holds every value (``SMALLINT``,
            ``FLOAT``); the runtime's lossless conversion brings them back.
    """

    name: str
    numpy: str
    json: tuple[tuple[str, object], ...]
    oip: str
    widens_to: tuple[str, ...] = ()
    family: str = ""
    spark: str = ""


@dataclass(frozen=True)
class OipDatatype:
    """One Open Inference Protocol v2 datatype as it travels in ``ModelInferRequest``.

    Attributes:
        name: the OIP datatype (``FP32``).
        numpy: numpy dtype of one element in ``raw_input_contents`` (little-endian); ``object``
            for BYTES, whose raw form is a 4-byte little-endian length before each element.
        contents: the ``InferTensorContents`` field holding typed (non-raw) elements; empty for
            FP16, which travels raw only.
    """

    name: str
    numpy: str
    contents: str


def _int_json(bits: int, *, signed: bool = True) -> tuple[tuple[str, object], ...]:
    low = -(2 ** (bits - 1)) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return (("type", "integer"), ("minimum", low), ("maximum", high))


_NUMBER = (("type", "number"),)
_BOOL = (("type", "boolean"),)

COLUMN_TYPES: dict[str, ColumnType] = {
    row.name: row
    for row in (
        ColumnType("bool", "bool", "boolean", "bool_", "BOOLEAN", "bool", _BOOL, "BOOL",
                   family="bool", proto_numpy="bool"),
        ColumnType("int8", "int8", "Int8", "int8", "TINYINT", "int32", _int_json(8), "INT8",
                   ("int16", "int32", "int64"),
                   family="int", proto_numpy="int32"),
        ColumnType("int16", "int16", "Int16", "int16", "SMALLINT", "int32", _int_json(16),
                   "INT16", ("int32", "int64"),
                   family="int", proto_numpy="int32"),
        ColumnType("int32", "int32", "Int32", "int32", "INT", "int32", _int_json(32), "INT32",
                   ("int64",),
                   family="int", proto_numpy="int32"),
        ColumnType("int64", "int64", "Int64", "int64", "BIGINT", "int64", _int_json(64), "INT64",
                   family="int", proto_numpy="int64"),
        ColumnType("float32", "float32", "float32", "float32", "FLOAT", "double", _NUMBER, "FP32",
                   ("float64",),
                   family="float", proto_numpy="float64"),
        ColumnType("float64", "float64", "float64", "float64", "DOUBLE", "double", _NUMBER,
                   "FP64",
                   family="float", proto_numpy="float64"),
        ColumnType("string", "object", "object", "string", "STRING", "string",
                   (("type", "string"),), "BYTES",
                   family="string", proto_numpy="object"),
        ColumnType("binary", "object", "object", "binary", "BINARY", "bytes",
                   (("type", "string"), ("contentEncoding", "base64")), "BYTES",
                   family="binary", proto_numpy="object"),
        ColumnType("date", "datetime64[D]", "datetime64[D]", "date32", "DATE", "int32",
                   (("type", "string"), ("format", "date")), "INT32",
                   family="datetime", proto_numpy="int32"),
        ColumnType("timestamp", "datetime64[us]", "datetime64[us]", "timestamp:us:UTC",
                   "TIMESTAMP", "int64", (("type", "string"), ("format", "date-time")), "INT64",
                   family="datetime", proto_numpy="int64"),
    )
}

TENSOR_DTYPES: dict[str, TensorDtype] = {
    row.name: row
    for row in (
        TensorDtype("bool", "bool", _BOOL, "BOOL",
                    family="bool", spark="BOOLEAN"),
        TensorDtype("int8", "<i1", _int_json(8), "INT8", ("int16", "int32", "int64"),
                    family="int", spark="TINYINT"),
        TensorDtype("int16", "<i2", _int_json(16), "INT16", ("int32", "int64"),
                    family="int", spark="SMALLINT"),
        TensorDtype("int32", "<i4", _int_json(32), "INT32", ("int64",),
                    family="int", spark="INT"),
        TensorDtype("int64", "<i8", _int_json(64), "INT64",
                    family="int", spark="BIGINT"),
        TensorDtype("uint8", "<u1", _int_json(8, signed=False), "UINT8",
                    ("int16", "int32", "int64"),
                    family="int", spark="SMALLINT"),
        TensorDtype("float16", "<f2", _NUMBER, "FP16", ("float32", "float64"),
                    family="float", spark="FLOAT"),
        TensorDtype("float32", "<f4", _NUMBER, "FP32", ("float64",),
                    family="float", spark="FLOAT"),
        TensorDtype("float64", "<f8", _NUMBER, "FP64",
                    family="float", spark="DOUBLE"),
    )
}

OIP_DATATYPES: dict[str, OipDatatype] = {
    row.name: row
    for row in (
        OipDatatype("BOOL", "bool", "bool_contents"),
        OipDatatype("INT8", "<i1", "int_contents"),
        OipDatatype("INT16", "<i2", "int_contents"),
        OipDatatype("INT32", "<i4", "int_contents"),
        OipDatatype("INT64", "<i8", "int64_contents"),
        OipDatatype("UINT8", "<u1", "uint_contents"),
        OipDatatype("UINT16", "<u2", "uint_contents"),
        OipDatatype("UINT32", "<u4", "uint_contents"),
        OipDatatype("UINT64", "<u8", "uint64_contents"),
        OipDatatype("FP16", "<f2", ""),
        OipDatatype("FP32", "<f4", "fp32_contents"),
        OipDatatype("FP64", "<f8", "fp64_contents"),
        OipDatatype("BYTES", "object", "bytes_contents"),
    )
}
