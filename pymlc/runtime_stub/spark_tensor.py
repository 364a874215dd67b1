"""Tensor models in Spark's Python workers: one query row per sample, one batch per tensor.

A tensor input of shape ``[-1, d1, ..., dk]`` arrives as a column of ``k`` nested arrays
(``ARRAY<ARRAY<FLOAT>>`` for ``[-1, 8, 8]``). Each Arrow batch of ``n`` rows becomes one numpy
array of shape ``[n, d1, ..., dk]`` without a per-row Python loop: every nesting level's list
lengths are checked at once (a fixed ``d`` must match in every row; a ``-1`` inner dimension must
be the same for all rows of a batch, since the rows are stacked), then the innermost values are
taken as one flat buffer and reshaped. The tensors go through :meth:`Predictor.predict_tensors`,
the very call the server makes; each output ``[n, e1, ...]`` is split back into one row per
sample, as nested arrays again, without a copy per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .checks import InputError, OutputError
from .spark_rows import PASSTHROUGH_PREFIX, bad_rows, check_micros
from .spark_score import predictor

__all__ = ["from_tensor", "score_tensor_batches", "to_tensor"]


def to_tensor(column: pa.Array, name: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """One batch of samples (a column of nested arrays) as one array ``[rows, d1, ..., dk]``.

    Args:
        column: the Arrow column: ``len(shape) - 1`` levels of lists around the elements.
        name: the tensor's name, for messages.
        shape: the spec's shape, ``-1`` first.

    Returns:
        The stacked samples, with the elements' numpy dtype (a view of Arrow's buffer where
        possible; the element dtype is conformed to the spec by the predictor).

    Raises:
        InputError: a null sample, array or element, or a dimension of the wrong size.
    """
    dims = [len(column)]
    values: pa.Array = column
    rows = np.arange(len(column))  # the sample each value of the current level belongs to
    for level, want in enumerate(shape[1:], start=1):
        _refuse_nulls(values, rows, name, "array" if level > 1 else "sample")
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        size = int(lengths[0]) if len(lengths) else max(want, 0)
        expected = size if want == -1 else want
        wrong = lengths != expected
        if wrong.any():
            raise _error(_size_problem(name, shape, level, lengths[wrong], expected, want,
                                       int(wrong.sum())), name, rows[wrong])
        dims.append(expected)
        rows = rows[pc.list_parent_indices(values).to_numpy()]
        values = values.flatten()
    _refuse_nulls(values, rows, name, "element")
    data: np.ndarray[Any, Any] = values.to_numpy(zero_copy_only=False)
    return data.reshape(dims)


def _refuse_nulls(values: pa.Array, rows: np.ndarray[Any, Any], name: str, what: str) -> None:
    if values.null_count:
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        raise _error(f"{name}: {values.null_count} null {what}(s); a tensor holds no nulls"
                     " (filter or COALESCE them in the query)", name, rows[nulls])


def _error(problem: str, name: str, rows: np.ndarray[Any, Any]) -> InputError:
    """An ``InputError`` that names its rows (``rows``: tensor -> sample positions)."""
    return InputError([problem], rows={name: sorted({int(r) for r in rows.tolist()})})


def _size_problem(name: str, shape: tuple[int, ...], level: int, found: Any, expected: int,
                  want: int, count: int) -> str:
    sizes = ", ".join(str(s) for s in sorted({int(x) for x in found[:1000]})[:5])
    if want == -1:
        return (f"{name}: dimension {level} of shape {list(shape)} is -1 but its size varies"
                f" within a batch ({expected} and {sizes}); the rows of a batch are stacked into"
                " one tensor, so they must agree")
    return (f"{name}: {count} row(s) have {sizes} values at dimension {level}, but shape"
            f" {list(shape)} needs {want}")


def from_tensor(values: np.ndarray[Any, Any], arrow_type: pa.DataType) -> pa.Array:
    """Split an output ``[rows, e1, ..., ek]`` into one row per sample, as nested lists.

    Args:
        values: the output tensor; its first dimension is the batch.
        arrow_type: the column's Arrow type: ``k`` levels of lists around the element type.

    Returns:
        One Arrow array of ``rows`` entries, each a ``[e1, ..., ek]`` nested list.
    """
    types = [arrow_type]
    while pa.types.is_list(types[-1]) or pa.types.is_large_list(types[-1]):
        types.append(types[-1].value_type)
    array: pa.Array = pa.array(np.ascontiguousarray(values).reshape(-1))
    if array.type != types[-1]:
        array = array.cast(types[-1])
    for level in range(len(types) - 2, -1, -1):
        size = values.shape[level + 1]
        large = pa.types.is_large_list(types[level])
        offsets = np.arange(0, len(array) + 1, size or 1, dtype=np.int64 if large else np.int32)
        if size == 0:  # every sample holds an empty list here
            offsets = np.zeros(int(np.prod(values.shape[: level + 1])) + 1, dtype=offsets.dtype)
        cls = pa.LargeListArray if large else pa.ListArray
        array = cls.from_arrays(pa.array(offsets), array, type=types[level])
    return array


def score_tensor_batches(batches: Iterator[pa.RecordBatch], *, config_path: str,
                         model_root: str, inputs: tuple[str, ...],
                         passthrough: tuple[str, ...], schema: pa.Schema,
                         micros: tuple[str, ...] = ()) -> Iterator[pa.RecordBatch]:
    """Score each Arrow batch of one partition with a tensor model.

    Args:
        batches: record batches holding one sample per row: the inputs as nested arrays (cast
            to the type table's Spark element types), the passthrough columns (named
            ``PASSTHROUGH_PREFIX + output name``) and the checks of nanosecond timestamps
            among them (as for ``spark_score.score_batches``).
        config_path: the generated ``model.json``.
        model_root: the spec's folder.
        inputs: the spec's input names, in spec order.
        passthrough: the passthrough columns' output names.
        schema: the Arrow schema of the output: passthrough columns, then the spec's outputs.
        micros: the names of the nanosecond timestamps checked.

    Yields:
        One record batch per input batch, one row per sample.

    Raises:
        BadRowsError: a sample breaks the spec (nulls, sizes, dtypes), naming its rows.
        OutputError: the model's outputs break the spec, or do not have one entry per sample.
    """
    model = predictor(config_path, model_root)
    shapes = {spec.name: spec.shape for spec in model.input_tensors}
    outputs = schema.names[len(passthrough):]
    offset = 0
    for batch in batches:
        check_micros(batch, micros, passthrough, offset)
        count = batch.num_rows
        arrays = [batch.column(PASSTHROUGH_PREFIX + name) for name in passthrough]
        if count:
            try:
                tensors = {name: to_tensor(batch.column(name), name, shapes[name])
                           for name in inputs}
                predicted = model.predict_tensors(tensors)
            except InputError as exc:
                raise bad_rows(exc, batch, passthrough, offset) from None
            _check_rows(predicted, count)
            arrays += [from_tensor(predicted[name], schema.field(name).type) for name in outputs]
        else:  # nothing to score: many models reject empty input
            arrays += [pa.array([], type=schema.field(name).type) for name in outputs]
        offset += count
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _check_rows(predicted: dict[str, np.ndarray[Any, Any]], count: int) -> None:
    problems = [f"{name}: predict returned {len(values)} entries for {count} input samples;"
                " the first dimension of each output must be the batch's"
                for name, values in predicted.items() if values.ndim == 0 or len(values) != count]
    if problems:
        raise OutputError(problems)
