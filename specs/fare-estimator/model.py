"""Fare estimator: a scikit-learn pipeline (one-hot city, numeric features, ridge regression)."""

from __future__ import annotations

import pathlib

import joblib
import pandas as pd

from pymlc import DataFrameModel

FEATURES = ["trip_distance_km", "city", "pickup_hour", "passengers"]


class FareModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.pipeline = joblib.load(artifacts / "model.joblib")

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        features = df[FEATURES].assign(city=df["city"].fillna("unknown"))
        return pd.DataFrame({"fare": self.pipeline.predict(features).astype("float64")})
