"""``Model.batch``: the Python API's batch job is ``pymlc batch``, with its exit code as an
exception. Real Spark (local mode, embedded Hive) in a warehouse of the test's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pymlc
from pymlc.api import BatchError

pytestmark = pytest.mark.spark

FARE = Path(__file__).resolve().parents[2] / "specs" / "fare-estimator"


def test_batch_scores_a_query_into_a_table_like_in_process(tmp_path: Path) -> None:
    model = pymlc.load(FARE)
    trips = pd.DataFrame(json.loads((FARE / "examples" / "input.json").read_text()))
    trips = trips.astype({"pickup_hour": "int32", "passengers": "int8"})
    trips.insert(0, "trip_id", np.arange(len(trips), dtype=np.int64) * 7)
    source = tmp_path / "trips.parquet"
    pq.write_table(pa.Table.from_pandas(trips, preserve_index=False), source)
    warehouse = tmp_path / "warehouse"

    model.batch(f"SELECT * FROM parquet.`{source}`", "scores.fares", warehouse=warehouse)

    files = [p for p in (warehouse / "scores.db").rglob("*.parquet")
             if not any(part.startswith(("_", ".")) for part in p.parts[-2:])]
    scored = pa.concat_tables([pq.read_table(p) for p in files]).to_pandas()
    scored = scored.sort_values("trip_id").reset_index(drop=True)
    assert list(scored["trip_id"]) == list(trips["trip_id"])
    expected = model.predict(trips.drop(columns=["trip_id"]))
    np.testing.assert_array_equal(scored["fare"].to_numpy(), expected["fare"].to_numpy())

    with pytest.raises(BatchError, match="scores.fares"):  # a query that lacks an input
        model.batch(f"SELECT trip_id FROM parquet.`{source}`", "scores.fares",
                    warehouse=warehouse)
    after = [p for p in (warehouse / "scores.db").rglob("*.parquet")
             if not any(part.startswith(("_", ".")) for part in p.parts[-2:])]
    assert sorted(after) == sorted(files)  # the failed job left the table as it was
