"""The batch driver in-process, on the test session's Spark: appends, replaces, and leaves the
destination exactly as it was when the job fails (model error or a null where the spec forbids
one), with no staging table or folder left behind."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import folders, make_failing_spec, no_debris, run_job, snapshot, table_folder

from pymlc.runtime_stub.spark_debris import STAGING_MARK

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


def test_a_null_in_a_non_nullable_input_fails_the_job_naming_its_rows_in_one_line(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    query = (f"SELECT trip_id, trip_distance_km, city, IF(trip_id IN (77, 912), NULL,"
             f" pickup_hour) AS pickup_hour, passengers FROM parquet.`{parquet}`"
             f" WHERE trip_id < 1000")
    capsys.readouterr()
    assert run_job(fare_config, query, "nulls.fares") == 1
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "pymlc batch: error: the job failed: bad rows: pickup_hour: 2 null value(s), but the" \
        " column is not nullable (rows with trip_id 77, 912)" in lines, err
    assert "Traceback" not in err and "at org.apache" not in err and "py4j" not in err
    log = Path(lines[-1].rpartition("the traces are in ")[2])
    assert "nulls.fares was left as it was" in lines[-1]
    assert "BadRowsError" in log.read_text(encoding="utf-8")  # the whole story is kept there
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


def _staging(spark: Any, name: str, rows: str, **properties: str) -> Path:
    """A staging table as a job killed with ``kill -9`` leaves it; its folder."""
    spark.sql(f"CREATE TABLE debris.{name} USING parquet AS {rows}")
    pairs = ", ".join(f"'{key}' = '{value}'" for key, value in
                      {"pyml.for": "debris.fares", "pyml.partition": "", **properties}.items())
    spark.sql(f"ALTER TABLE debris.{name} SET TBLPROPERTIES ({pairs})")
    return table_folder(spark, f"debris.{name}")


def test_the_next_job_finishes_or_undoes_what_killed_jobs_left(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    assert run_job(fare_config, _query(parquet, 100), "debris.fares") == 0
    old = table_folder(spark, "debris.fares")
    stale = f"{time.time() - 3600:.0f}"
    # Killed while scoring: its staging table was never swapped in.
    scoring = _staging(spark, f"fares{STAGING_MARK}00000000beef", "SELECT 1L AS trip_id,"
                       " 2.0D AS fare", **{"pyml.heartbeat": stale})
    # Killed right after pointing the table at its staging folder: the swap went through, and
    # the replaced folder (recorded before the swap) is still to be deleted.
    swapped = _staging(spark, f"fares{STAGING_MARK}00000000cafe", "SELECT 7L AS trip_id,"
                       " 8.0D AS fare", **{"pyml.heartbeat": stale, "pyml.replaces": str(old)})
    spark.sql(f"ALTER TABLE debris.fares SET LOCATION '{swapped.as_uri()}'")
    spark.sql("REFRESH TABLE debris.fares")
    # A job writing another table right now.
    running = _staging(spark, f"other{STAGING_MARK}00000000f00d", "SELECT 1 AS a",
                       **{"pyml.for": "debris.other", "pyml.heartbeat": f"{time.time():.0f}"})
    capsys.readouterr()

    assert run_job(fare_config, _query(parquet, 50), "debris.fares", mode="append") == 0

    err = capsys.readouterr().err
    assert err.count("left by a job that died 60 min ago") == 2, err
    assert spark.table("debris.fares").count() == 51  # the dead job's row, then 50 appended
    assert not scoring.exists() and not old.exists()
    assert swapped.exists() and running.exists()
    assert [t.name for t in spark.catalog.listTables("debris") if STAGING_MARK in t.name] == [
        running.name]


def test_a_live_job_on_the_same_table_is_one_clear_error(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    spark.sql("CREATE DATABASE IF NOT EXISTS busy")
    spark.sql(f"CREATE TABLE busy.fares{STAGING_MARK}00000000babe USING parquet AS SELECT 1 AS a")
    spark.sql(f"ALTER TABLE busy.fares{STAGING_MARK}00000000babe SET TBLPROPERTIES"
              f" ('pyml.for' = 'busy.fares', 'pyml.heartbeat' = '{time.time():.0f}')")
    capsys.readouterr()
    assert run_job(fare_config, _query(parquet, 10), "busy.fares") == 1
    err = capsys.readouterr().err
    assert f"error: another job is writing busy.fares right now (its staging table" \
        f" busy.fares{STAGING_MARK}00000000babe was alive" in err
    assert "Traceback" not in err and "at org.apache" not in err
    assert not spark.catalog.tableExists("busy.fares")


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
