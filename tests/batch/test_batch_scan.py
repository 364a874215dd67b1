"""The Python workers read a plain query's Parquet files themselves (``spark_scan``): the same
rows, bit for bit, as when Spark reads the query for them; and Spark still reads every query
they could not read exactly as Spark would (a filter, an expression, a partitioned table, a
file whose columns differ, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_failing_spec, no_debris, run_job, snapshot, trips

from pymlc.runtime_stub.spark_scan import (
    READ_FILES,
    Piece,
    ReadColumn,
    _same_values,
    _tasks,
    read_pieces,
)

WORKERS_READ = "the Python workers read the query's"
SPARK_READS = "Spark reads the query for the Python workers: "
COLUMNS = "trip_id, trip_distance_km, city, pickup_hour, passengers"


# --- dealing row groups into tasks, and reading them (no Spark) ---

def test_rows_are_dealt_into_one_equal_range_per_core() -> None:
    groups = [("a", 0, 100), ("a", 1, 100), ("b", 0, 50)]
    assert _tasks(groups, cores=2, rows_per_batch=10) == (
        (Piece("a", 0, 0, 100, True), Piece("a", 1, 0, 25, False)),
        (Piece("a", 1, 25, 100, False), Piece("b", 0, 0, 50, True)),
    )


def test_fewer_rows_than_a_batch_per_core_make_fewer_tasks() -> None:
    groups = [("a", 0, 30), ("b", 0, 30)]
    assert _tasks(groups, cores=4, rows_per_batch=30) == (
        (Piece("a", 0, 0, 30, True),), (Piece("b", 0, 0, 30, True),))
    assert _tasks(groups, cores=4, rows_per_batch=100) == (
        (Piece("a", 0, 0, 30, True), Piece("b", 0, 0, 30, True)),)
    assert _tasks([], cores=2, rows_per_batch=10) == ()


@pytest.mark.parametrize(("given", "wanted", "same"), [
    (pa.int32(), pa.int32(), True),
    (pa.int8(), pa.int32(), True),  # the query's safe cast, done by the worker
    (pa.int64(), pa.int32(), False),
    (pa.uint8(), pa.int16(), False),  # Spark reads unsigned columns its own way
    (pa.float32(), pa.float64(), True),
    (pa.float16(), pa.float32(), False),
    (pa.float64(), pa.float32(), False),
    (pa.dictionary(pa.int32(), pa.string()), pa.string(), True),
    (pa.large_string(), pa.string(), True),
    (pa.binary(), pa.string(), False),  # spark.sql.parquet.binaryAsString
    (pa.string(), pa.binary(), False),
    (pa.int32(), pa.float64(), False),
    (pa.bool_(), pa.bool_(), True),
])
def test_a_file_column_is_read_only_when_it_holds_what_spark_reads(
        given: pa.DataType, wanted: pa.DataType, same: bool) -> None:
    assert _same_values(given, wanted) is same


def test_pieces_read_back_the_rows_in_order_cast_and_decoded(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array(range(250), pa.int64()),
        "hour": pa.array([i % 24 for i in range(250)], pa.int8()),
        "city": pa.array([None if i % 7 == 0 else f"c{i % 5}" for i in range(250)])
        .dictionary_encode(),
    })
    path = str(tmp_path / "t.parquet")
    pq.write_table(table, path, row_group_size=100)  # groups of 100, 100, 50
    columns = [ReadColumn("id", "__pyml_passthrough_id", pa.int64()),
               ReadColumn("hour", "hour", pa.int32()),
               ReadColumn("city", "city", pa.string()),
               ReadColumn("id", "id", pa.int64())]
    pieces = [Piece(path, 0, 0, 100, True), Piece(path, 1, 0, 30, False),
              Piece(path, 1, 30, 100, False), Piece(path, 2, 0, 50, True)]

    batches = list(read_pieces(pieces, columns, rows_per_batch=40))

    assert max(b.num_rows for b in batches) <= 40
    read = pa.Table.from_batches(batches)
    assert read.schema.names == ["__pyml_passthrough_id", "hour", "city", "id"]
    assert read.schema.types == [pa.int64(), pa.int32(), pa.string(), pa.int64()]
    assert read.column("id").to_pylist() == list(range(250))
    assert read.column("hour").to_pylist() == [i % 24 for i in range(250)]
    assert read.column("city").to_pylist() == table.column("city").to_pylist()


# --- whole jobs on the test session's Spark ---

@pytest.fixture
def read_files(spark: Any) -> Iterator[Any]:
    """Sets ``spark.pymlc.batch.readFiles`` for one test: call it with "true" or "false"."""
    yield lambda value: spark.conf.set(READ_FILES, value)
    spark.conf.unset(READ_FILES)


def _trip_files(folder: Path) -> Path:
    """Three files of trips, as other writers leave them: narrower types than the spec's
    (``pickup_hour`` SMALLINT, ``trip_distance_km`` FLOAT), the trip id named ``id``, a
    dictionary-encoded city in one file, several row groups, and a file without rows."""
    folder.mkdir()
    frame = trips(23_456, seed=5).rename(columns={"trip_id": "id"}).astype(
        {"pickup_hour": "int16", "trip_distance_km": "float32"})
    frame["note"] = "not selected"
    frame.iloc[:9_000].to_parquet(folder / "a.parquet", index=False, row_group_size=2_000)
    schema = pq.read_schema(folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[:0], schema=schema, preserve_index=False),
                   folder / "b.parquet")
    last = frame.iloc[9_000:].astype({"city": "category"})
    last.to_parquet(folder / "c.parquet", index=False, row_group_size=10_000)
    assert pa.types.is_dictionary(pq.read_schema(folder / "c.parquet").field("city").type)
    return folder


def test_a_plain_scan_is_read_by_the_workers_with_the_rows_spark_reads(
        spark: Any, fare_config: Path, tmp_path: Path, read_files: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = _trip_files(tmp_path / "trips")
    query = (f"SELECT id AS trip_id, trip_distance_km, city, pickup_hour, passengers"
             f" FROM parquet.`{folder}`")
    capsys.readouterr()

    assert run_job(fare_config, query, "scan.by_workers") == 0
    err = capsys.readouterr().err
    read_files("false")
    assert run_job(fare_config, query, "scan.by_spark") == 0

    assert f"{WORKERS_READ} 3 Parquet files themselves (23456 rows, 1 task)" in err
    assert f"{SPARK_READS}{READ_FILES} is false" in capsys.readouterr().err
    by_workers = snapshot(spark, "scan.by_workers")
    assert len(by_workers) == 23_456
    assert len({row[0] for row in by_workers}) == 23_456
    assert by_workers == snapshot(spark, "scan.by_spark")  # bit for bit: floats compare ==


def test_a_hive_parquet_table_is_read_by_the_workers(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet, frame = trips_parquet
    spark.sql("CREATE DATABASE IF NOT EXISTS scan")
    spark.sql(f"CREATE TABLE scan.hive_trips STORED AS PARQUET AS SELECT {COLUMNS}"
              f" FROM parquet.`{parquet}`")
    capsys.readouterr()

    assert run_job(fare_config, "SELECT * FROM scan.hive_trips", "scan.hive_fares") == 0

    assert WORKERS_READ in capsys.readouterr().err
    fares = spark.table("scan.hive_fares").toPandas().sort_values("trip_id", ignore_index=True)
    assert fares["trip_id"].tolist() == frame["trip_id"].tolist()
    assert fares["fare"].notna().all()


def _partitioned(spark: Any, parquet: Path) -> str:
    spark.sql("CREATE DATABASE IF NOT EXISTS scan")
    spark.sql(f"CREATE TABLE IF NOT EXISTS scan.by_passengers USING parquet"
              f" PARTITIONED BY (passengers) AS SELECT {COLUMNS} FROM parquet.`{parquet}`"
              f" WHERE trip_id < 5000")
    return "SELECT * FROM scan.by_passengers"


def _other_case(tmp_path: Path, parquet: Path) -> str:
    folder = tmp_path / "cases"
    folder.mkdir()
    frame = pd.read_parquet(parquet).iloc[:5000]
    frame.iloc[:2500].to_parquet(folder / "a.parquet", index=False)
    frame.iloc[2500:].rename(columns={"city": "City"}).to_parquet(folder / "b.parquet",
                                                                    index=False)
    return f"SELECT {COLUMNS} FROM parquet.`{folder}`"


def _first_rows(tmp_path: Path, parquet: Path) -> Path:
    path = tmp_path / "first.parquet"
    pd.read_parquet(parquet).iloc[:5000].to_parquet(path, index=False)
    return path


# Queries whose rows only Spark reads as Spark does: (query, reason in the progress line).
FALLBACKS = {
    "a filter": (lambda s, t, p: f"SELECT * FROM parquet.`{p}` WHERE trip_id < 5000",
                 "more than a selection of columns (Filter)"),
    "a limit": (lambda s, t, p: f"SELECT * FROM parquet.`{p}` LIMIT 5000",
                "more than a selection of columns (GlobalLimit)"),
    "an expression": (lambda s, t, p: f"SELECT trip_id + 1 AS trip_id, trip_distance_km, city,"
                      f" pickup_hour, passengers FROM parquet.`{_first_rows(t, p)}`",
                      "it computes a column"),
    "a partitioned table": (lambda s, t, p: _partitioned(s, p), "it reads a partitioned table"),
    "a file naming a column otherwise": (lambda s, t, p: _other_case(t, p),
                                         "under that exact name"),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_spark_reads_what_the_workers_could_not_read_alike(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any], tmp_path: Path,
        case: str, capsys: pytest.CaptureFixture[str]) -> None:
    parquet, frame = trips_parquet
    make_query, reason = FALLBACKS[case]
    query = make_query(spark, tmp_path, parquet)
    table = f"fallback.{case.replace(' ', '_')}"
    capsys.readouterr()

    assert run_job(fare_config, query, table) == 0

    err = capsys.readouterr().err
    assert SPARK_READS in err and reason in err, err
    assert WORKERS_READ not in err
    fares = spark.table(table).toPandas()
    assert len(fares) == 5000
    assert fares["trip_id"].isin(frame["trip_id"] + (case == "an expression")).all()
    assert fares["fare"].notna().all()


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_model_failing_half_way_through_the_files_leaves_the_table_unchanged(
        spark: Any, fare_config: Path, fare_model: Path, tmp_path: Path, mode: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet = tmp_path / "trips.parquet"
    trips(20_000, seed=3).to_parquet(parquet, index=False, row_group_size=4_000)
    query = f"SELECT * FROM parquet.`{parquet}`"
    table = f"scanfails.{mode}"
    assert run_job(fare_config, query, table) == 0
    before = snapshot(spark, table)
    failing = make_failing_spec(tmp_path / "failing", fare_model, fail_after=2_000)
    capsys.readouterr()

    code = run_job(failing, query, table, root=failing.parent.parent, mode=mode)

    err = capsys.readouterr().err
    assert code == 1
    assert WORKERS_READ in err
    assert "RuntimeError: deliberate failure after 2100 rows" in err
    assert snapshot(spark, table) == before
    no_debris(spark, "scanfails")
