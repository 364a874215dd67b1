"""``pymlc batch`` end to end, as a user runs it: its own JVM, its own warehouse folder.

Each run starts Spark (15-30 s here), so the assertions are combined into few runs: 100,000 rows
from a Parquet file into a new table with the passthrough column and nulls in the nullable
``city``, identical bit for bit to ``Predictor.predict_frame`` in-process; and a query that does
not fit the spec, refused before any work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import FARE

from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.predict import Predictor

pytestmark = pytest.mark.spark

PYMLC = [sys.executable, "-m", "pymlc"]


def _pymlc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run([*PYMLC, "batch", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_a_parquet_query_is_scored_into_a_table_like_in_process(
        java: None, fare_model: Path, fare_config: Path, trips_parquet: tuple[Path, pd.DataFrame],
        tmp_path: Path) -> None:
    parquet, frame = trips_parquet
    work, warehouse = tmp_path / "work", tmp_path / "warehouse"
    work.mkdir()
    result = _pymlc([str(fare_model), "--query", f"SELECT * FROM parquet.`{parquet}`",
                     "--output-table", "scores.fares", "--warehouse", str(warehouse)], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Spark ready on local[*] in" in result.stderr  # the real master
    assert "query checked in" in result.stderr and "4 inputs, 1 passthrough" in result.stderr
    assert "done: 100000 rows written to scores.fares" in result.stderr
    assert "rows/s" in result.stderr

    # The warehouse holds the tables, Derby's metastore and its log, and the job's log; nothing
    # at all is written to the working folder, and no staging table folder survives.
    assert list(work.iterdir()) == []
    assert {"metastore_db", "derby.log", "scores.db", "logs"} <= \
        {p.name for p in warehouse.iterdir()}
    assert sorted(p.name for p in (warehouse / "scores.db").iterdir()) == ["fares"]
    assert " WARN " not in result.stderr and "at org.apache" not in result.stderr  # JVM: the log
    assert len(list((warehouse / "logs").glob("batch-*.log"))) == 1

    table = pq.read_table(warehouse / "scores.db" / "fares").to_pandas()
    assert list(table.columns) == ["trip_id", "fare"]
    table = table.sort_values("trip_id", ignore_index=True)
    assert table["trip_id"].tolist() == frame["trip_id"].tolist()
    assert frame["city"].isna().sum() > 9000  # nulls in the nullable string column...
    assert table["fare"].notna().all()  # ...are scored

    predictor = Predictor(ModelConfig.load(fare_config), FARE)
    expected = predictor.predict_frame(frame.drop(columns="trip_id"))["fare"].to_numpy()
    assert np.array_equal(table["fare"].to_numpy().view(np.int64), expected.view(np.int64))


def test_a_query_that_does_not_fit_is_refused_before_any_work(
        java: None, fare_model: Path, trips_parquet: tuple[Path, pd.DataFrame],
        tmp_path: Path) -> None:
    parquet, _ = trips_parquet
    query = (f"SELECT CAST(pickup_hour AS BIGINT) AS pickup_hour, CAST(city AS BINARY) AS city,"
             f" trip_distance_km FROM parquet.`{parquet}`")
    result = _pymlc([str(fare_model), "--query", query, "--output-table", "scores.bad",
                     "--warehouse", str(tmp_path / "wh")], cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    err = result.stderr
    assert "does not fit the spec (4 problems); nothing was written to scores.bad" in err
    assert "column 'city' is BINARY, but input 'city' is string" in err
    assert "column 'pickup_hour' is BIGINT, but input 'pickup_hour' is int32" in err
    assert "missing column 'passengers'" in err
    assert "missing column 'trip_id'" in err
    assert "scoring" not in err
    assert not (tmp_path / "wh" / "scores.db").exists()


def test_usage_errors_exit_2(tmp_path: Path, fare_model: Path) -> None:
    result = _pymlc([str(fare_model), "--query", "SELECT 1"], cwd=tmp_path)
    assert result.returncode == 2
    assert "--output-table" in result.stderr
    result = _pymlc([str(fare_model), "--query", "SELECT 1", "--output-table", "a.b.c"],
                    cwd=tmp_path)
    assert result.returncode == 2
    assert "expected DB.TABLE or TABLE" in result.stderr
