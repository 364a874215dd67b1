"""Run the spec's examples through ``Predictor`` and compare with the expected output.

Used by ``pymlc validate`` (and reusable by anything that wants the same verdict): numbers
compare within the spec's tolerance (``rtol``/``atol``, as ``numpy.isclose``), everything else
exactly, nulls equal to nulls. Each mismatch names its field and row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .codecs import read_columns, read_tensors
from .predict import Predictor

__all__ = ["ExampleResult", "run_examples"]

_SHOWN = 5  # mismatches listed per field; the rest are counted


@dataclass(frozen=True)
class ExampleResult:
    """What running the examples found.

    Attributes:
        rows: input rows (dataframe) or batch size of the first input (tensor) scored.
        compared: whether an expected output was given and compared.
        mismatches: one message per field/row that differs, beyond the tolerance.
    """

    rows: int
    compared: bool
    mismatches: tuple[str, ...]


def run_examples(predictor: Predictor, model_root: Path) -> ExampleResult | None:
    """Score ``examples.input`` and compare with ``examples.output`` when the spec has one.

    Args:
        predictor: the loaded model.
        model_root: the spec's folder, against which example paths resolve.

    Returns:
        The result, or None if the spec has no examples.

    Raises:
        InputError: the example input does not match the spec.
        OutputError: the model's outputs do not match the spec.
    """
    examples = predictor.config.examples
    if not examples:
        return None
    expected_path = examples.get("output")
    rtol, atol = float(examples.get("rtol", 0.0)), float(examples.get("atol", 0.0))
    source = model_root / examples["input"]
    if predictor.config.kind == "dataframe":
        frame = predictor.predict_columns(read_columns(source, predictor.input_columns))
        if expected_path is None:
            return ExampleResult(len(frame), False, ())
        wanted = read_columns(model_root / expected_path, predictor.output_columns)
        got = {name: frame[name].to_numpy() for name in frame.columns}
        return ExampleResult(len(frame), True, tuple(_compare(got, wanted, rtol, atol)))
    tensors = predictor.predict_tensors(read_tensors(source, predictor.input_tensors))
    rows = len(next(iter(tensors.values()), ()))
    if expected_path is None:
        return ExampleResult(rows, False, ())
    wanted = read_tensors(model_root / expected_path, predictor.output_tensors)
    return ExampleResult(rows, True, tuple(_compare(tensors, wanted, rtol, atol)))


def _compare(got: Mapping[str, Any], wanted: Mapping[str, Any], rtol: float,
             atol: float) -> list[str]:
    problems = [f"{name}: in the expected output but not an output of the spec"
                for name in wanted if name not in got]
    for name, actual in got.items():
        if name not in wanted:
            problems.append(f"{name}: missing from the expected output")
            continue
        problems += _compare_field(name, np.asarray(actual), np.asarray(wanted[name]),
                                   rtol, atol)
    return problems


def _compare_field(name: str, actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any],
                   rtol: float, atol: float) -> list[str]:
    if actual.shape != expected.shape:
        return [f"{name}: shape {list(actual.shape)}, expected {list(expected.shape)}"]
    same = _same(actual, expected, rtol, atol)
    bad = np.argwhere(~same)
    problems = [f"{name}[{', '.join(str(i) for i in index)}]: got"
                f" {_plain(actual[tuple(index)])!r}, expected {_plain(expected[tuple(index)])!r}"
                f" (rtol={rtol}, atol={atol})" for index in bad[:_SHOWN]]
    if len(bad) > _SHOWN:
        problems.append(f"{name}: ... and {len(bad) - _SHOWN} more mismatches")
    return problems


def _same(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any], rtol: float,
          atol: float) -> np.ndarray[Any, Any]:
    null_a, null_e = np.asarray(pd.isna(actual)), np.asarray(pd.isna(expected))
    if actual.dtype.kind in "iuf" and expected.dtype.kind in "iuf":
        close = np.isclose(actual.astype(np.float64), expected.astype(np.float64),
                           rtol=rtol, atol=atol)
    else:  # element by element: pd.NA does not compare to a bool
        pairs = zip(actual.ravel().tolist(), expected.ravel().tolist(), strict=True)
        close = np.array([_equal(a, e) for a, e in pairs], dtype=bool).reshape(actual.shape)
    return np.asarray((close & ~null_a & ~null_e) | (null_a & null_e), dtype=bool)


def _equal(a: Any, b: Any) -> bool:
    if pd.isna(a) or pd.isna(b):
        return False  # nulls are matched by the caller
    return bool(a == b)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
