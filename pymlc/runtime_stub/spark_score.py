"""What runs in Spark's Python workers: the model, loaded once per worker, scoring Arrow batches.

``score_batches`` is the function Spark maps over each partition's Arrow record batches
(``mapInArrow``; ``batch.rows_per_batch`` rows each). It lives in an importable module (never
``__main__``) so Spark pickles it by reference. The predictor is cached at module level, keyed
by the config path and model root, so a reused worker (``spark.python.worker.reuse``) loads the
model once for all its tasks. Scoring goes through :meth:`Predictor.predict_columns`, the very
call the server makes: input checks, the model's ``predict``, output checks.

Why Arrow batches rather than ``mapInPandas``' frames: pyspark turns an integer column holding a
null into float64 (and a boolean one into objects), so the dtype the model would see depended
on whether a batch happened to contain a null, and int64 values above 2**53 lost precision.
Here nullable integers and booleans become pandas' masked arrays (the spec's ``pandas_nullable``
dtypes), every other type converts as pandas does, and passthrough columns are copied as Arrow
arrays, untouched. It costs no more than ``mapInPandas`` (measured: docs/batch.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from .checks import InputError
from .config import ModelConfig
from .predict import Predictor
from .spark_rows import MICROS_PREFIX, PASSTHROUGH_PREFIX, bad_rows, check_micros
from .types import COLUMN_TYPES

__all__ = ["MICROS_PREFIX", "PASSTHROUGH_PREFIX", "arrow_type", "predictor", "score_batches",
           "to_columns", "to_frame", "warm_up"]

_PREDICTORS: dict[tuple[str, str], Predictor] = {}


def predictor(config_path: str, model_root: str) -> Predictor:
    """The worker's predictor for one model, constructed on first use.

    Args:
        config_path: the generated ``model.json``.
        model_root: the spec's folder (model code and artifacts).

    Returns:
        The cached :class:`Predictor`.
    """
    key = (config_path, model_root)
    found = _PREDICTORS.get(key)
    if found is None:
        found = Predictor(ModelConfig.load(config_path), Path(model_root))
        _PREDICTORS[key] = found
    return found


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a type table ``arrow`` entry (``"timestamp:us:UTC"``)."""
    factory, *args = name.split(":")
    made: pa.DataType = getattr(pa, factory)(*args)
    return made


# Arrow type -> the type table's masked pandas dtype (``Int32``, ``boolean``), used for integer
# and boolean columns that hold nulls.
_PANDAS_MASKED: dict[pa.DataType, Any] = {
    arrow_type(row.arrow): pd.api.types.pandas_dtype(row.pandas_nullable)
    for row in COLUMN_TYPES.values() if row.pandas_nullable != row.numpy
}


def to_columns(batch: pa.RecordBatch, names: tuple[str, ...]) -> dict[str, pd.Series]:
    """The named columns of an Arrow batch, as the predictor receives them.

    Integer and boolean columns holding nulls become masked arrays (``Int32``, ``boolean``);
    without nulls they stay plain numpy. Strings and bytes become objects (None for null),
    floats numpy (NaN for null), dates and timestamps datetime64.

    Args:
        batch: one Arrow record batch.
        names: the columns to convert, in order.

    Returns:
        Column name -> values, for :meth:`Predictor.predict_columns` (the server's entry).
    """
    columns = {}
    for name in names:
        array = batch.column(name)
        masked = _PANDAS_MASKED.get(array.type) if array.null_count else None
        if masked is not None:
            columns[name] = array.to_pandas(types_mapper={array.type: masked}.get)
        else:
            columns[name] = array.to_pandas(date_as_object=False)
    return columns


def to_frame(batch: pa.RecordBatch, names: tuple[str, ...]) -> pd.DataFrame:
    """Like :func:`to_columns`, as a DataFrame with a ``RangeIndex``."""
    return pd.DataFrame(to_columns(batch, names), copy=False)


def warm_up(batches: Iterator[pa.RecordBatch], *, config_path: str,
            model_root: str) -> Iterator[pa.RecordBatch]:
    """Load the model into this worker and yield nothing.

    The driver runs this over one tiny partition per core while it checks the query, so the
    workers' start-up (imports, model load) overlaps the driver's own work; the job's tasks
    then reuse the warm workers (``spark.python.worker.reuse``).

    Args:
        batches: ignored.
        config_path: the generated ``model.json``.
        model_root: the spec's folder.

    Yields:
        Nothing.
    """
    predictor(config_path, model_root)
    for _ in batches:
        pass
    yield from ()


def score_batches(batches: Iterator[pa.RecordBatch], *, config_path: str, model_root: str,
                  inputs: tuple[str, ...], passthrough: tuple[str, ...], schema: pa.Schema,
                  nullable: tuple[bool, ...], micros: tuple[str, ...] = ()
                  ) -> Iterator[pa.RecordBatch]:
    """Score each Arrow batch of one partition: passthrough columns, then the predictions.

    Args:
        batches: record batches holding the inputs (already cast to the spec's types), the
            passthrough columns (named ``PASSTHROUGH_PREFIX + output name``) and, for each
            nanosecond timestamp of the query, whether its value is whole microseconds
            (``MICROS_PREFIX + index``).
        config_path: the generated ``model.json``.
        model_root: the spec's folder.
        inputs: the spec's input names, in spec order.
        passthrough: the passthrough columns' output names.
        schema: the Arrow schema of the output: passthrough columns, then the spec's outputs.
        nullable: for each spec output, whether it is nullable (a NaN in a nullable float
            output is a null; in a non-nullable one it stays NaN).
        micros: the names of the nanosecond timestamps checked (``MICROS_PREFIX + index``).

    Yields:
        One record batch per input batch, with the same number of rows.

    Raises:
        BadRowsError: a batch breaks the spec's input contract (e.g. a null in a non-nullable
            column): the message names the column and the rows; Spark fails the job with it.
        OutputError: the model's output breaks the spec's output contract.
    """
    model = predictor(config_path, model_root)
    outputs = schema.names[len(passthrough):]
    offset = 0
    for batch in batches:
        check_micros(batch, micros, passthrough, offset)
        columns = to_columns(batch, inputs)
        try:
            predictions = model.predict_columns(columns)
        except InputError as exc:
            raise bad_rows(exc, batch, passthrough, offset,
                           locate=lambda: _locate(model, columns, batch.num_rows)) from None
        arrays = [batch.column(PASSTHROUGH_PREFIX + name) for name in passthrough]
        arrays += [_to_arrow(predictions[name], schema.field(name).type, null_nan)
                   for name, null_nan in zip(outputs, nullable, strict=True)]
        offset += batch.num_rows
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_arrow(values: pd.Series, arrow_type: pa.DataType, null_nan: bool) -> pa.Array:
    array = pa.array(values, from_pandas=null_nan)
    return array if array.type == arrow_type else array.cast(arrow_type)


def _locate(model: Predictor, columns: dict[str, pd.Series], rows: int,
            limit: int = 10) -> tuple[int, ...]:
    """The first rows of a batch that the input checks refuse, found by checking halves.

    For an ``InputError`` that does not name its rows: the same checks, on ever smaller
    slices of the batch (a row fails alone if it fails at all, except for problems of the
    batch as a whole, which name no row).
    """
    from .checks import conform_columns

    def fails(start: int, stop: int) -> bool:
        part = {name: values.iloc[start:stop].reset_index(drop=True)
                for name, values in columns.items()}
        try:
            conform_columns(part, model.input_columns)
        except InputError:
            return True
        return False

    found: list[int] = []
    pending = [(0, rows)]
    while pending and len(found) < limit:
        start, stop = pending.pop()
        if stop <= start or not fails(start, stop):
            continue
        if stop - start == 1:
            found.append(start)
        else:
            middle = (start + stop) // 2
            pending += [(middle, stop), (start, middle)]  # the lower half first
    return tuple(found)
