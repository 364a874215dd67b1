"""The contract model authors implement: a constructor that loads parameters once, and
``predict``. Nothing else is required; the runtime checks inputs before ``predict`` and outputs
after it, against the spec."""

from __future__ import annotations

import abc
import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["DataFrameModel", "TensorModel"]


class DataFrameModel(abc.ABC):
    """A model over a pandas DataFrame: columns in, columns out, one output row per input row.

    Args:
        artifacts: the folder named by ``model.artifacts`` in the spec (the spec's folder if
            unset), holding whatever the model loads: weights, vocabularies, pickles.

    Example:
        >>> import joblib
        >>> class FareModel(DataFrameModel):
        ...     def __init__(self, artifacts):
        ...         self.pipeline = joblib.load(artifacts / "model.joblib")
        ...     def predict(self, df):
        ...         return pd.DataFrame({"fare": self.pipeline.predict(df)})
    """

    @abc.abstractmethod
    def __init__(self, artifacts: pathlib.Path) -> None:
        """Load parameters once; called before the server reports ready."""

    @abc.abstractmethod
    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Score a batch of rows.

        Args:
            df: the spec's input columns, in spec order, with the spec's dtypes.

        Returns:
            A DataFrame with the spec's output columns and exactly ``len(df)`` rows.
        """


class TensorModel(abc.ABC):
    """A model over named numpy arrays.

    Args:
        artifacts: the folder named by ``model.artifacts`` in the spec.

    Example:
        >>> class DigitNet(TensorModel):
        ...     def __init__(self, artifacts):
        ...         weights = np.load(artifacts / "weights.npz")
        ...         self.w, self.b = weights["w"], weights["b"]
        ...     def predict(self, tensors):
        ...         logits = tensors["pixels"].reshape(-1, 64) @ self.w + self.b
        ...         return {"label": logits.argmax(axis=1)}
    """

    @abc.abstractmethod
    def __init__(self, artifacts: pathlib.Path) -> None:
        """Load parameters once; called before the server reports ready."""

    @abc.abstractmethod
    def predict(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Score a batch.

        Args:
            tensors: each spec input by name, with the spec's dtype and a matching shape.

        Returns:
            Each spec output by name, with the spec's dtype and shape.
        """
