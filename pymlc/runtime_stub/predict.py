"""THE call path from data to predictions, shared by the gRPC server and the Spark batch driver.

Both go through ``Predictor``: inputs conformed to the spec, the model's ``predict``, outputs
checked. Online and offline therefore cannot drift: same checks, same conversions, same model
call. ``Predictor`` holds no per-call state, so one instance serves concurrent callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checks import (
    InputError,
    check_output_arrays,
    check_output_tensors,
    column_specs,
    conform_columns,
    conform_tensors,
    tensor_specs,
)
from .config import ModelConfig
from .contracts import DataFrameModel, TensorModel
from .loader import load_model

__all__ = ["Predictor"]


class Predictor:
    """A loaded model wrapped in the spec's input and output checks.

    Args:
        config: the model's ``model.json``.
        model_root: the spec's folder (holds the model module and its artifacts).

    Attributes:
        input_columns, output_columns: the spec's columns (dataframe models; else empty).
        input_tensors, output_tensors: the spec's tensors (tensor models; else empty).

    Raises:
        ModelLoadError: the model could not be imported or constructed.

    Example:
        >>> predictor = Predictor(ModelConfig.load("generated/model.json"), Path("."))
        >>> predictor.predict_frame(pd.DataFrame({"trip_distance_km": [3.2], ...}))
    """

    def __init__(self, config: ModelConfig, model_root: Path) -> None:
        self.config = config
        self.model: DataFrameModel | TensorModel = load_model(config, model_root)
        self.input_columns = column_specs(config.inputs) if config.kind == "dataframe" else ()
        self.output_columns = column_specs(config.outputs) if config.kind == "dataframe" else ()
        self.input_tensors = tensor_specs(config.inputs) if config.kind == "tensor" else ()
        self.output_tensors = tensor_specs(config.outputs) if config.kind == "tensor" else ()
        # Once, not per call: isinstance against an ABC is a slow check on the request path.
        self._tensor_model = isinstance(self.model, TensorModel)

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Score a DataFrame with a dataframe model.

        Args:
            df: exactly the spec's input columns (any order; a nullable one left out is null
                in every row); values of another dtype are converted only when lossless
                (int32 -> int64, or int64 -> int8 when every value fits).

        Returns:
            The spec's output columns, in spec order and dtypes, one row per input row, with a
            ``RangeIndex`` (aligned by position with ``df``).

        Raises:
            InputError: the input does not match the spec; the message names each bad column.
            OutputError: the model returned outputs that do not match the spec.
            TypeError: the model is a tensor model.
        """
        if df.columns.has_duplicates:
            duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
            raise InputError([f"{name}: duplicate input column" for name in duplicated])
        return self.predict_columns({str(name): df[name] for name in df.columns})

    def predict_columns(self, columns: Mapping[str, Any]) -> pd.DataFrame:
        """Like ``predict_frame``, from a mapping of column name -> array (saves a DataFrame).

        Args:
            columns: column name -> values, one per row (numpy/pandas arrays or Series).

        Returns:
            The spec's output columns, as for ``predict_frame``.

        Raises:
            InputError: the input does not match the spec.
            OutputError: the model returned outputs that do not match the spec.
            TypeError: the model is a tensor model.
        """
        return pd.DataFrame(self.predict_arrays(columns), copy=False)

    def predict_arrays(self, columns: Mapping[str, Any]) -> dict[str, Any]:
        """Like ``predict_columns``, returning the outputs as arrays (what codecs encode).

        Args:
            columns: column name -> values, one per row.

        Returns:
            Output name -> numpy or pandas array in the spec's dtype, in spec order.

        Raises:
            InputError: the input does not match the spec.
            OutputError: the model returned outputs that do not match the spec.
            TypeError: the model is a tensor model.
        """
        if self._tensor_model:
            raise TypeError(f"{self.config.name} is a tensor model; call predict_tensors")
        model: DataFrameModel = self.model  # type: ignore[assignment]
        frame = conform_columns(columns, self.input_columns)
        rows = len(frame)
        if rows == 0:  # nothing to score: many models reject empty input
            return {s.name: pd.array([], dtype=s.dtype) for s in self.output_columns}
        return check_output_arrays(model.predict(frame), self.output_columns, rows)

    def predict_tensors(self, tensors: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """Score named tensors with a tensor model.

        Args:
            tensors: each spec input by name; dtypes convert only when lossless and shapes
                must match the spec (-1 = any size). Arrays may be read-only.

        Returns:
            Each spec output by name, with the spec's dtype and a shape matching the spec.

        Raises:
            InputError: the input does not match the spec; the message names each bad tensor.
            OutputError: the model returned outputs that do not match the spec.
            TypeError: the model is a dataframe model.
        """
        if not self._tensor_model:
            raise TypeError(f"{self.config.name} is a dataframe model; call predict_frame")
        arrays = conform_tensors(tensors, self.input_tensors)
        return check_output_tensors(self.model.predict(arrays), self.output_tensors)

