"""The staging table's files: written by the Python workers in local mode, as Spark would write
them (codec, INT96 timestamps, integer decimals), and by Spark's own writer for what pyarrow
cannot write alike (maps, timestamp_ntz) or a destination stored as ORC. Either way every
passthrough value reaches the table unchanged, nulls included."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FARE, table_folder

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.spark_driver import main
from pymlc.runtime_stub.spark_score import write_parquet

pytestmark = pytest.mark.spark

# Passthrough columns of every type pyarrow writes as Spark does, with nulls in each.
WRITTEN_ALIKE = {
    "p_byte": "CAST(trip_id % 100 AS TINYINT)",
    "p_short": "CAST(trip_id AS SMALLINT)",
    "p_int": "CAST(trip_id * 7 AS INT)",
    "p_float": "CAST(trip_distance_km AS FLOAT)",
    "p_bool": "trip_id % 3 = 0",
    "p_binary": "CAST(city AS BINARY)",
    "p_date": "DATE_ADD(DATE'2024-02-28', CAST(trip_id % 400 AS INT))",
    "p_ts": "TIMESTAMP_MICROS(1700000000123457 + trip_id * 1234567891)",
    "p_dec9": "CAST(trip_distance_km AS DECIMAL(9, 2))",
    "p_dec18": "CAST(trip_id * 1000.001 AS DECIMAL(18, 3))",
    "p_dec30": "CAST(trip_id AS DECIMAL(30, 5)) / 7",
    "p_doubles": "ARRAY(trip_distance_km, NULL)",
    "p_strings": "ARRAY(city, 'x')",
}
# Types only Spark's writer writes as Spark reads them back.
SPARK_ONLY = {
    "p_map": "MAP('trip', trip_id)",
    "p_ntz": "CAST(TIMESTAMP_MICROS(1700000000123457 + trip_id) AS TIMESTAMP_NTZ)",
}


def _config(folder: Path, fare_model: Path, passthrough: list[str]) -> Path:
    """A copy of the fare estimator with these passthrough columns; its ``model.json``."""
    shutil.copytree(fare_model.parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    spec = fare_model.read_text(encoding="utf-8").replace(
        "passthrough: [trip_id]", f"passthrough: [{', '.join(passthrough)}]")
    (folder / "pyml.yaml").write_text(spec, encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return folder / "generated" / "model.json"


def _query(parquet: Path, columns: dict[str, str]) -> str:
    # Every fifth row has a null in each passthrough column.
    extra = "".join(f", IF(trip_id % 5 = 4, NULL, {sql}) AS {name}"
                    for name, sql in columns.items())
    return (f"SELECT trip_id, trip_distance_km, city, pickup_hour, passengers{extra}"
            f" FROM parquet.`{parquet}` WHERE trip_id < 3000")


def _files(spark: Any, table: str) -> list[Path]:
    return sorted(table_folder(spark, table).glob("*.parquet"))


def _rows(frame: Any, columns: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in frame.select("trip_id", *columns).orderBy("trip_id").collect()]


def _score(fare_model: Path, tmp_path: Path, parquet: Path, columns: dict[str, str],
           table: str) -> str:
    """Scores the query with these passthrough columns into ``table``; returns the query."""
    config = _config(tmp_path / "spec", fare_model, ["trip_id", *columns])
    query = _query(parquet, columns)
    argv = ["--query", query, "--output-table", table, "--model-root", str(config.parents[1])]
    assert main(argv, config_path=config) == 0
    return query


def test_the_workers_write_every_type_as_spark_would(
        spark: Any, fare_model: Path, tmp_path: Path, trips_parquet: tuple[Path, Any]) -> None:
    query = _score(fare_model, tmp_path, trips_parquet[0], WRITTEN_ALIKE, "files.alike")

    columns = list(WRITTEN_ALIKE)
    assert _rows(spark.table("files.alike"), columns) == _rows(spark.sql(query), columns)
    files = _files(spark, "files.alike")
    assert files and all(pq.ParquetFile(f).metadata.created_by.startswith("parquet-cpp-arrow")
                         for f in files)  # the workers wrote them, one per task with rows
    written = pq.ParquetFile(files[0])
    schema = written.schema
    physical = {schema.column(i).name: schema.column(i).physical_type
                for i in range(len(schema)) if schema.column(i).max_repetition_level == 0}
    assert physical["p_ts"] == "INT96"  # spark.sql.parquet.outputTimestampType's default
    assert (physical["p_dec9"], physical["p_dec18"]) == ("INT32", "INT64")
    assert written.metadata.row_group(0).column(0).compression == "SNAPPY"


def test_what_pyarrow_cannot_write_alike_goes_through_sparks_writer(
        spark: Any, fare_model: Path, tmp_path: Path, trips_parquet: tuple[Path, Any]) -> None:
    columns = {**SPARK_ONLY, "p_ts": WRITTEN_ALIKE["p_ts"]}
    query = _score(fare_model, tmp_path, trips_parquet[0], columns, "files.spark")

    assert _rows(spark.table("files.spark"), list(columns)) == _rows(spark.sql(query),
                                                                      list(columns))
    files = _files(spark, "files.spark")
    assert files and all(pq.ParquetFile(f).metadata.created_by.startswith("parquet-mr")
                         for f in files)


def test_an_orc_destination_gets_the_same_rows_as_a_parquet_one(
        spark: Any, fare_config: Path, trips_parquet: tuple[Path, Any]) -> None:
    parquet, _ = trips_parquet
    query = (f"SELECT trip_id, trip_distance_km, city, pickup_hour, passengers"
             f" FROM parquet.`{parquet}` WHERE trip_id < 2000")
    spark.sql("CREATE DATABASE IF NOT EXISTS formats")
    spark.sql("CREATE TABLE formats.orc (trip_id BIGINT, fare DOUBLE) USING orc")
    for mode, table in [("overwrite", "formats.orc"), ("append", "formats.orc"),
                        ("overwrite", "formats.parquet")]:
        argv = ["--query", query, "--output-table", table, "--model-root", str(FARE),
                "--mode", mode]
        assert main(argv, config_path=fare_config) == 0
    orc, parquet_rows = spark.table("formats.orc"), spark.table("formats.parquet")
    assert orc.count() == 4000
    assert sorted(_rows(orc.distinct(), ["fare"])) == sorted(_rows(parquet_rows, ["fare"]))
    assert len(_rows(parquet_rows, ["fare"])) == 2000


def _batches(rows: int, size: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, rows, size):
        yield pa.RecordBatch.from_arrays([pa.array(range(start, min(start + size, rows)))],
                                         names=["n"])


def test_a_worker_writes_one_complete_file_or_none(tmp_path: Path) -> None:
    options = {"compression": "snappy"}

    def fails(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for index, batch in enumerate(batches):
            if index == 2:
                raise RuntimeError("the model failed")
            yield batch

    with pytest.raises(RuntimeError, match="the model failed"):
        list(write_parquet(_batches(500, 100), score=fails, folder=str(tmp_path / "a"),
                           options=options))
    assert list((tmp_path / "a").iterdir()) == []  # not even the hidden half-written file

    empty = list(write_parquet(iter([]), score=iter, folder=str(tmp_path / "b"),
                               options=options))
    assert [b.to_pydict() for b in empty] == [{"rows": [0]}]
    assert not (tmp_path / "b").exists()

    done = list(write_parquet(_batches(250, 100), score=iter, folder=str(tmp_path / "c"),
                              options=options))
    assert [b.to_pydict() for b in done] == [{"rows": [250]}]
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["part-00000.parquet"]
    assert pq.read_table(tmp_path / "c" / "part-00000.parquet")["n"].to_pylist() == \
        list(range(250))
