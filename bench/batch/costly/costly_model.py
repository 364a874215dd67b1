"""A costly model for the batch benchmark: gradient-boosted trees (100 of them) on the fare
estimator's features. ``python costly_model.py`` trains it into out/model.joblib."""

from __future__ import annotations

import pathlib
import sys

import joblib
import numpy as np
import pandas as pd

from pymlc import DataFrameModel

HERE = pathlib.Path(__file__).resolve().parent
CITIES = {"amsterdam": 0, "berlin": 1, "lisbon": 2, "paris": 3}


def features(df: pd.DataFrame) -> np.ndarray:
    city = df["city"].map(CITIES).fillna(-1).to_numpy(dtype=np.float64)
    return np.column_stack([df["trip_distance_km"].to_numpy(dtype=np.float64), city,
                            df["pickup_hour"].to_numpy(dtype=np.float64),
                            df["passengers"].to_numpy(dtype=np.float64)])


class CostlyModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.model = joblib.load(artifacts / "model.joblib")

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"fare": self.model.predict(features(df)).astype("float64")})


def train() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    sys.path.insert(0, str(HERE.parents[2] / "specs" / "fare-estimator"))
    from train import fares, trips

    df = trips(20_000, seed=0)
    model = HistGradientBoostingRegressor(max_iter=100, max_leaf_nodes=31, random_state=0,
                                          early_stopping=False)
    model.fit(features(df), fares(df, seed=1))
    (HERE / "out").mkdir(exist_ok=True)
    joblib.dump(model, HERE / "out" / "model.joblib")


if __name__ == "__main__":
    train()
