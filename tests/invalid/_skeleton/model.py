"""A trivial model: the invalid-spec corpus needs real files, not a real model."""

from __future__ import annotations

import pathlib

import pandas as pd

from pymlc import DataFrameModel


class FareModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.artifacts = artifacts

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"fare": df["trip_distance_km"] * 2.0})
