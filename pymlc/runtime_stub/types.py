"""The one type table: each spec column type and tensor dtype, in every representation.

Every other module (compiler emitters and runtime codecs alike) reads these rows; none of them
knows a mapping of its own. Representations are plain strings so that the table needs no
third-party import: the runtime turns them into numpy/pandas/Arrow objects where it needs them.

Wire encodings (documented for client authors):
  * dataframe columns travel column-wise as ``repeated <proto>`` fields;
    ``date`` is days since 1970-01-01 and ``timestamp`` microseconds since the epoch (UTC);
    int8/int16 travel as int32 and are range-checked;
  * tensors travel as ``Tensor{shape, data}``, ``data`` being the raw little-endian,
    row-major bytes of the array, so decoding is a zero-copy ``np.frombuffer``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMN_TYPES",
    "TENSOR_DTYPES",
    "ColumnType",
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


@dataclass(frozen=True)
class TensorDtype:
    """How one tensor dtype is represented everywhere.

    Attributes:
        name: the spec's dtype name (``float32``).
        numpy: numpy dtype, little-endian.
        json: JSON Schema of one element.
        oip: Open Inference Protocol v2 datatype.
        widens_to: dtypes an array of this dtype converts to without loss.
    """

    name: str
    numpy: str
    json: tuple[tuple[str, object], ...]
    oip: str
    widens_to: tuple[str, ...] = ()


def _int_json(bits: int, *, signed: bool = True) -> tuple[tuple[str, object], ...]:
    low = -(2 ** (bits - 1)) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return (("type", "integer"), ("minimum", low), ("maximum", high))


_NUMBER = (("type", "number"),)
_BOOL = (("type", "boolean"),)

COLUMN_TYPES: dict[str, ColumnType] = {
    row.name: row
    for row in (
        ColumnType("bool", "bool", "boolean", "bool_", "BOOLEAN", "bool", _BOOL, "BOOL"),
        ColumnType("int8", "int8", "Int8", "int8", "TINYINT", "int32", _int_json(8), "INT8",
                   ("int16", "int32", "int64")),
        ColumnType("int16", "int16", "Int16", "int16", "SMALLINT", "int32", _int_json(16),
                   "INT16", ("int32", "int64")),
        ColumnType("int32", "int32", "Int32", "int32", "INT", "int32", _int_json(32), "INT32",
                   ("int64",)),
        ColumnType("int64", "int64", "Int64", "int64", "BIGINT", "int64", _int_json(64), "INT64"),
        ColumnType("float32", "float32", "float32", "float32", "FLOAT", "float", _NUMBER, "FP32",
                   ("float64",)),
        ColumnType("float64", "float64", "float64", "float64", "DOUBLE", "double", _NUMBER,
                   "FP64"),
        ColumnType("string", "object", "object", "string", "STRING", "string",
                   (("type", "string"),), "BYTES"),
        ColumnType("binary", "object", "object", "binary", "BINARY", "bytes",
                   (("type", "string"), ("contentEncoding", "base64")), "BYTES"),
        ColumnType("date", "datetime64[D]", "datetime64[D]", "date32", "DATE", "int32",
                   (("type", "string"), ("format", "date")), "INT32"),
        ColumnType("timestamp", "datetime64[us]", "datetime64[us]", "timestamp:us:UTC",
                   "TIMESTAMP", "int64", (("type", "string"), ("format", "date-time")), "INT64"),
    )
}

TENSOR_DTYPES: dict[str, TensorDtype] = {
    row.name: row
    for row in (
        TensorDtype("bool", "bool", _BOOL, "BOOL"),
        TensorDtype("int8", "<i1", _int_json(8), "INT8", ("int16", "int32", "int64")),
        TensorDtype("int16", "<i2", _int_json(16), "INT16", ("int32", "int64")),
        TensorDtype("int32", "<i4", _int_json(32), "INT32", ("int64",)),
        TensorDtype("int64", "<i8", _int_json(64), "INT64"),
        TensorDtype("uint8", "<u1", _int_json(8, signed=False), "UINT8",
                    ("int16", "int32", "int64")),
        TensorDtype("float16", "<f2", _NUMBER, "FP16", ("float32", "float64")),
        TensorDtype("float32", "<f4", _NUMBER, "FP32", ("float64",)),
        TensorDtype("float64", "<f8", _NUMBER, "FP64"),
    )
}
