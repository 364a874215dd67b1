"""Daily scoring into date partitions (``--partition KEY=VALUE``): the table is created on first
use, partitioned by the keys; a re-run replaces exactly its partition, atomically (a failing
re-run leaves it as it was, byte for byte, with no debris), every other partition untouched;
append mode appends to the partition; bad partition values and mismatched keys are refused
before any work."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from conftest import make_failing_spec, no_debris, run_job, snapshot

from pymlc.runtime_stub.spark_table import TableName, partition_location

pytestmark = pytest.mark.spark


def _query(parquet: Path, start: int, stop: int) -> str:
    return (f"SELECT trip_id, trip_distance_km, city, pickup_hour, passengers"
            f" FROM parquet.`{parquet}` WHERE trip_id >= {start} AND trip_id < {stop}")


def _day(spark: Any, table: str, day: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r)[:2] for r in spark.table(table).where(f"day = '{day}'").collect())


def _bytes(spark: Any, table: str, day: str) -> dict[str, str]:
    """The partition's folder and every file in it: name -> sha256."""
    found = partition_location(spark, TableName.parse(table), (("day", day),))
    assert found is not None
    folder = Path(found.removeprefix("file:"))
    return {str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_days_are_written_replaced_and_appended_one_partition_at_a_time(
        spark: Any, fare_config: Path, fare_model: Path, trips_parquet: tuple[Path, Any],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    table = "daily.fares"
    assert run_job(fare_config, _query(parquet, 0, 400), table, partition=("day=2024-05-01",)) == 0
    assert run_job(fare_config, _query(parquet, 400, 700), table,
                   partition=("day=2024-05-02",)) == 0
    assert [r[0] for r in spark.sql(f"SHOW PARTITIONS {table}").collect()] == [
        "day=2024-05-01", "day=2024-05-02"]
    assert [(f.name, f.dataType.simpleString()) for f in spark.table(table).schema.fields] == [
        ("trip_id", "bigint"), ("fare", "double"), ("day", "string")]
    first, second = _day(spark, table, "2024-05-01"), _day(spark, table, "2024-05-02")
    assert [r[0] for r in first] == list(range(400)) and len(second) == 300
    kept = _bytes(spark, table, "2024-05-02")

    # A re-run of day 1 with fewer rows replaces day 1 only.
    assert run_job(fare_config, _query(parquet, 0, 100), table, partition=("day=2024-05-01",)) == 0
    assert _day(spark, table, "2024-05-01") == first[:100]
    assert _bytes(spark, table, "2024-05-02") == kept

    # A re-run of day 2 that fails half-way leaves day 2 (and day 1) exactly as they were.
    failing = make_failing_spec(tmp_path / "failing", fare_model, fail_after=2_000)
    capsys.readouterr()
    assert run_job(failing, _query(parquet, 0, 20_000), table, root=failing.parent.parent,
                   partition=("day=2024-05-02",)) == 1
    assert "daily.fares partition day=2024-05-02 was left as it was" in capsys.readouterr().err
    assert _bytes(spark, table, "2024-05-02") == kept
    assert _day(spark, table, "2024-05-01") == first[:100]

    # Append adds to day 1; a new day appended is created.
    assert run_job(fare_config, _query(parquet, 100, 150), table, mode="append",
                   partition=("day=2024-05-01",)) == 0
    assert _day(spark, table, "2024-05-01") == first[:150]
    assert run_job(fare_config, _query(parquet, 0, 10), table, mode="append",
                   partition=("day=2024-05-03",)) == 0
    assert len(_day(spark, table, "2024-05-03")) == 10
    assert _bytes(spark, table, "2024-05-02") == kept
    no_debris(spark, "daily")


def test_two_keys_in_any_order_and_a_typed_key(spark: Any, fare_config: Path,
                                               trips_parquet: tuple[Path, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    spark.sql("CREATE DATABASE IF NOT EXISTS typed")
    spark.sql("CREATE TABLE typed.fares (trip_id BIGINT, fare DOUBLE, day DATE, region STRING)"
              " USING parquet PARTITIONED BY (day, region)")
    assert run_job(fare_config, _query(parquet, 0, 20), "typed.fares",
                   partition=("region=eu", "day=2024-05-01")) == 0
    assert run_job(fare_config, _query(parquet, 0, 30), "typed.fares",
                   partition=("day=2024-05-01", "region=eu")) == 0
    assert spark.table("typed.fares").count() == 30
    assert str(spark.table("typed.fares").first()["day"]) == "2024-05-01"
    capsys.readouterr()
    assert run_job(fare_config, _query(parquet, 0, 20), "typed.fares",
                   partition=("region=eu", "day=2024-13-45")) == 1
    err = capsys.readouterr().err
    assert "--partition day=2024-13-45: typed.fares's partition column day is DATE, and" \
        " '2024-13-45' is not one" in err
    assert "scoring" not in err


def test_mismatched_keys_and_bad_values_are_refused_before_any_work(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, _ = trips_parquet
    query = _query(parquet, 0, 10)
    assert run_job(fare_config, query, "keys.daily", partition=("day=2024-05-01",)) == 0
    assert run_job(fare_config, query, "keys.flat") == 0
    before = snapshot(spark, "keys.daily"), snapshot(spark, "keys.flat")
    capsys.readouterr()
    assert run_job(fare_config, query, "keys.daily", partition=("region=eu",)) == 1
    assert "keys.daily is partitioned by (day), but --partition gives (region)" \
        in capsys.readouterr().err
    assert run_job(fare_config, query, "keys.daily") == 1
    assert "keys.daily is partitioned by (day); give one --partition KEY=VALUE" \
        in capsys.readouterr().err
    assert run_job(fare_config, query, "keys.flat", partition=("day=2024-05-01",)) == 1
    assert "keys.flat is not partitioned, but --partition gives (day)" in capsys.readouterr().err
    for bad in ("day=2024/05/01", "day=x' OR '1'='1", "day=../x"):
        assert run_job(fare_config, query, "keys.daily", partition=(bad,)) == 2
        assert "a value is 1-128 letters, digits and - _ . : +" in capsys.readouterr().err
    assert (snapshot(spark, "keys.daily"), snapshot(spark, "keys.flat")) == before
    no_debris(spark, "keys")
