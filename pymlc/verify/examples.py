"""The spec's examples as every path of ``pymlc verify`` takes them: inputs conformed to the
spec (the same conversions the server and the batch job make), the expected output if the spec
names one, and the tolerance.

Host-side only. Reads the files through the runtime's own codecs, so that a format the runtime
cannot read fails here, before any container starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime_stub import checks, codecs
from ..runtime_stub.config import ModelConfig

__all__ = ["Examples", "ExamplesError", "load_examples", "outputs_of_frame"]


class ExamplesError(Exception):
    """The spec has no examples, or they cannot be read; the message says which."""


@dataclass(frozen=True)
class Examples:
    """The examples of one spec.

    Attributes:
        kind: ``dataframe`` or ``tensor``.
        inputs: input name -> values in the spec's dtype, one entry per row (first axis).
        expected: output name -> expected values, if the spec has ``examples.output``.
        rows: the number of example rows (the first input's first dimension for tensors).
        rtol, atol: the spec's tolerance for numbers.
    """

    kind: str
    inputs: dict[str, Any]
    expected: dict[str, np.ndarray[Any, Any]] | None
    rows: int
    rtol: float
    atol: float


def load_examples(config: ModelConfig, model_root: Path) -> Examples:
    """Read ``examples.input`` (and ``examples.output``) of the spec.

    Raises:
        ExamplesError: no examples in the spec, or a file that does not match it.
    """
    spec = config.examples
    if not spec:
        raise ExamplesError(f"{config.name} has no examples: add examples.input (and"
                            " examples.output) to the spec; verify runs them")
    try:
        if config.kind == "dataframe":
            return _frame_examples(config, model_root, spec)
        return _tensor_examples(config, model_root, spec)
    except checks.ContractError as exc:
        raise ExamplesError("; ".join(exc.problems)) from None
    except (OSError, ValueError) as exc:
        raise ExamplesError(f"cannot read the examples: {exc}") from None


def _frame_examples(config: ModelConfig, root: Path, spec: dict[str, Any]) -> Examples:
    inputs = checks.column_specs(config.inputs)
    frame = checks.conform_columns(codecs.read_columns(root / spec["input"], inputs), inputs)
    expected = None
    if spec.get("output"):
        outputs = checks.column_specs(config.outputs)
        wanted = checks.conform_columns(codecs.read_columns(root / spec["output"], outputs),
                                        outputs)
        expected = outputs_of_frame(wanted)
    columns = {str(name): frame[name] for name in frame.columns}
    return Examples("dataframe", columns, expected, len(frame), *_tolerance(spec))


def _tensor_examples(config: ModelConfig, root: Path, spec: dict[str, Any]) -> Examples:
    inputs = checks.tensor_specs(config.inputs)
    tensors = checks.conform_tensors(codecs.read_tensors(root / spec["input"], inputs), inputs)
    expected = None
    if spec.get("output"):
        outputs = checks.tensor_specs(config.outputs)
        expected = {name: np.asarray(value) for name, value in
                    codecs.read_tensors(root / spec["output"], outputs).items()}
    rows = len(next(iter(tensors.values()))) if tensors else 0
    return Examples("tensor", dict(tensors), expected, rows, *_tolerance(spec))


def _tolerance(spec: dict[str, Any]) -> tuple[float, float]:
    return float(spec.get("rtol", 0.0)), float(spec.get("atol", 0.0))


def outputs_of_frame(frame: Any) -> dict[str, np.ndarray[Any, Any]]:
    """A DataFrame's columns as numpy arrays (nullable columns as objects with ``pd.NA``)."""
    return {str(name): frame[name].to_numpy() for name in frame.columns}
