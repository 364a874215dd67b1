"""The batch driver in-process, on the test session's Spark: appends, replaces, and leaves the
destination exactly as it was when the job fails (model error or a null where the spec forbids
one), with no staging table or folder left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import folders, make_failing_spec, no_debris, run_job, snapshot, table_folder

from pymlc.runtime_stub.spark_table import STAGING_MARK

pytestmark = pytest.mark.spark


def _query(parquet: Path, rows: int, *, extra: str = "") -> str:
    return (f"SELECT trip_id, trip_distance_km, city, pickup_hour, passengers{extra}"
            f" FROM parquet.`{parquet}` WHERE trip_id < {rows}")


def test_overwrite_and_append_replace_and_add_rows(spark: Any, fare_config: Path,
                                                   trips_parquet: tuple[Path, Any]) -> None:
    parquet, _ = trips_parquet
    assert run_job(fare_config, _query(parquet, 1000), "runs.fares") == 0
    assert spark.table("runs.fares").count() == 1000
    assert [f.name for f in spark.table("runs.fares").schema.fields] == ["trip_id", "fare"]
    assert run_job(fare_config, _query(parquet, 500), "runs.fares", mode="append") == 0
    assert spark.table("runs.fares").count() == 1500
    first = snapshot(spark, "runs.fares")
    assert len({row[0] for row in first}) == 1000  # the appended 500 repeat trip ids 0..499
    assert run_job(fare_config, _query(parquet, 700), "runs.fares") == 0
    replaced = snapshot(spark, "runs.fares")
    assert len(replaced) == 700
    assert run_job(fare_config, _query(parquet, 300), "runs.fares") == 0
    assert snapshot(spark, "runs.fares") == [r for r in replaced if r[0] < 300]
    # Each overwrite points the table at a new folder and deletes the old one.
    assert len(folders(spark, "runs")) == 1
    no_debris(spark, "runs")


def test_a_safe_cast_in_the_query_scores_the_same(spark: Any, fare_config: Path,
                                                  trips_parquet: tuple[Path, Any]) -> None:
    parquet, _ = trips_parquet
    narrow = (f"SELECT trip_id, CAST(trip_distance_km AS FLOAT) AS trip_distance_km, city,"
              f" CAST(pickup_hour AS TINYINT) AS PICKUP_HOUR, passengers"
              f" FROM parquet.`{parquet}` WHERE trip_id < 200")
    wide = (f"SELECT trip_id, CAST(CAST(trip_distance_km AS FLOAT) AS DOUBLE) AS"
            f" trip_distance_km, city, pickup_hour, passengers FROM parquet.`{parquet}`"
            f" WHERE trip_id < 200")
    assert run_job(fare_config, narrow, "runs.narrow") == 0
    assert run_job(fare_config, wide, "runs.wide") == 0
    assert snapshot(spark, "runs.narrow") == snapshot(spark, "runs.wide")


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_model_failing_half_way_leaves_the_table_unchanged(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any], tmp_path: Path,
        fare_model: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    table = f"fails.{mode}"
    assert run_job(fare_config, _query(parquet, 1000), table) == 0
    before, kept = snapshot(spark, table), folders(spark, "fails")
    failing = make_failing_spec(tmp_path / "failing", fare_model, fail_after=2_000)
    capsys.readouterr()

    code = run_job(failing, _query(parquet, 20_000), table, root=failing.parent.parent, mode=mode)

    err = capsys.readouterr().err
    assert code == 1
    assert "RuntimeError: deliberate failure after 2100 rows" in err
    assert f"{table} was left as it was" in err
    assert snapshot(spark, table) == before
    assert folders(spark, "fails") == kept
    no_debris(spark, "fails")


def test_a_null_in_a_non_nullable_input_fails_the_job_and_writes_nothing(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    query = (f"SELECT trip_id, trip_distance_km, city, IF(trip_id = 77, NULL, pickup_hour)"
             f" AS pickup_hour, passengers FROM parquet.`{parquet}` WHERE trip_id < 1000")
    capsys.readouterr()
    assert run_job(fare_config, query, "nulls.fares") == 1
    err = capsys.readouterr().err
    assert "InputError: pickup_hour: 1 null value(s), but the column is not nullable" in err
    assert not spark.catalog.databaseExists("nulls")  # created for the job, dropped again


def test_a_destination_with_other_columns_is_refused_before_any_work(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    spark.sql("CREATE DATABASE IF NOT EXISTS other")
    spark.sql("CREATE TABLE other.fares (trip_id BIGINT, fare FLOAT) USING parquet")
    spark.sql("INSERT INTO other.fares VALUES (1, 2.5)")
    capsys.readouterr()
    assert run_job(fare_config, _query(parquet, 100), "other.fares") == 1
    err = capsys.readouterr().err
    assert "has columns (trip_id BIGINT, fare FLOAT) but the job writes (trip_id BIGINT," \
        " fare DOUBLE)" in err
    assert "scoring" not in err
    assert spark.table("other.fares").collect()[0]["fare"] == 2.5


def _age(folder: Path, seconds: float) -> None:
    old = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (old, old))


def test_the_next_job_removes_stale_debris_of_a_killed_job(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    assert run_job(fare_config, _query(parquet, 100), "debris.fares") == 0
    base = Path(spark.catalog.getDatabase("debris").locationUri.removeprefix("file:"))
    # What `kill -9` leaves: a staging table with its folder, a half-written staging folder,
    # replaced data never deleted; and a staging folder of a job running right now.
    staging = f"fares{STAGING_MARK}0123456789ab"
    spark.sql(f"CREATE TABLE debris.{staging} USING parquet AS SELECT 1 AS trip_id, 2.0 AS fare")
    (base / f"fares{STAGING_MARK}00000000beef" / "_temporary").mkdir(parents=True)
    (base / "fares__pyml_00000000cafe").mkdir()
    (base / "fares__pyml_00000000cafe" / "part-0.parquet").write_bytes(b"old")
    running = base / f"fares{STAGING_MARK}00000000f00d"
    (running / "_temporary").mkdir(parents=True)
    # A table renamed away from `fares` keeps using a folder with a data name: never deleted.
    kept = base / "fares__pyml_0000000000aa"
    spark.sql(f"CREATE TABLE debris.renamed USING parquet LOCATION '{kept}' AS SELECT 1 AS a")
    for folder in [base / staging, base / f"fares{STAGING_MARK}00000000beef",
                   base / "fares__pyml_00000000cafe", kept]:
        _age(folder, 3600)
    capsys.readouterr()

    assert run_job(fare_config, _query(parquet, 50), "debris.fares") == 0

    err = capsys.readouterr().err
    assert f"dropping staging table debris.{staging} left by an earlier job" in err
    assert err.count("left by an earlier job") == 3, err
    assert not spark.catalog.tableExists(f"debris.{staging}")
    names = folders(spark, "debris")
    assert running.name in names and kept.name in names
    assert not {staging, f"fares{STAGING_MARK}00000000beef", "fares__pyml_00000000cafe"} \
        & set(names)
    assert spark.table("debris.fares").count() == 50
    assert spark.table("debris.renamed").count() == 1


def test_a_query_without_rows_writes_an_empty_table(spark: Any, fare_config: Path,
                                                    trips_parquet: tuple[Path, Any]) -> None:
    parquet, _ = trips_parquet
    assert run_job(fare_config, _query(parquet, 0), "empty.fares") == 0
    assert spark.table("empty.fares").count() == 0
    assert [f.name for f in spark.table("empty.fares").schema.fields] == ["trip_id", "fare"]
    assert run_job(fare_config, _query(parquet, 10), "empty.fares") == 0
    assert run_job(fare_config, _query(parquet, 0), "empty.fares", mode="append") == 0
    assert spark.table("empty.fares").count() == 10
    assert run_job(fare_config, _query(parquet, 0), "empty.fares") == 0
    assert spark.table("empty.fares").count() == 0
    assert table_folder(spark, "empty.fares").is_dir()  # as Spark's writer leaves it
    no_debris(spark, "empty")
