"""The same rows through the batch job and through the gRPC server (``pymlc serve`` +
``pymlc predict``) give the same fares, bit for bit: one ``Predictor``, one codec path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import FARE

from pymlc.runtime_stub.spark_driver import main

pytestmark = pytest.mark.spark

INPUTS = ["trip_distance_km", "city", "pickup_hour", "passengers"]


def _serve(spec: Path, socket: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "pymlc", "serve", str(spec), "--socket",
                               str(socket)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:
        if re.match(r"pymlc: serving \S+ \S+ on ", line.strip()):
            return server
    server.kill()
    server.communicate()
    pytest.fail(f"pymlc serve did not start (exit {server.wait()})")


def test_batch_and_server_give_identical_fares(spark: Any, fare_model: Path, fare_config: Path,
                                               trips_parquet: tuple[Path, pd.DataFrame],
                                               tmp_path: Path) -> None:
    parquet, frame = trips_parquet
    rows = frame[frame["trip_id"] < 2000]
    query = f"SELECT * FROM parquet.`{parquet}` WHERE trip_id < 2000"
    assert main(["--query", query, "--output-table", "parity.fares", "--model-root", str(FARE)],
                config_path=fare_config) == 0
    batch = spark.table("parity.fares").toPandas().sort_values("trip_id", ignore_index=True)

    inputs = tmp_path / "rows.parquet"
    rows[INPUTS].to_parquet(inputs, index=False)
    socket = tmp_path / "model.sock"
    server = _serve(fare_model, socket)
    try:
        predicted = subprocess.run(
            [sys.executable, "-m", "pymlc", "predict", str(fare_model), "--input", str(inputs),
             "--socket", str(socket), "--format", "json"],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.terminate()
        server.communicate(timeout=30)  # drains and closes its stderr
    assert predicted.returncode == 0, predicted.stderr
    online = np.array([r["fare"] for r in json.loads(predicted.stdout)], dtype=np.float64)
    assert batch["trip_id"].tolist() == rows["trip_id"].tolist()
    assert rows["city"].isna().any()
    assert np.array_equal(batch["fare"].to_numpy().view(np.int64), online.view(np.int64))
