"""The table's files, written by Spark's own writer: every passthrough type reaches the table
unchanged, nulls included, and a destination stored as ORC gets the same rows as a Parquet one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import FARE, table_folder

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.spark_driver import main

pytestmark = pytest.mark.spark

# Passthrough columns of many types, with nulls in each.
PASSTHROUGH = {
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


def test_every_passthrough_type_reaches_the_table_unchanged(
        spark: Any, fare_model: Path, tmp_path: Path, trips_parquet: tuple[Path, Any]) -> None:
    query = _score(fare_model, tmp_path, trips_parquet[0], PASSTHROUGH, "files.types")

    columns = list(PASSTHROUGH)
    assert _rows(spark.table("files.types"), columns) == _rows(spark.sql(query), columns)
    files = _files(spark, "files.types")
    assert files and all(pq.ParquetFile(f).metadata.created_by.startswith("parquet-mr")
                         for f in files)  # Spark's own writer


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
