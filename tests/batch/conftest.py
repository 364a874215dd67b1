"""Fixtures for the batch tests: real Spark, real Hive metastore (Derby), real models.

One in-process SparkSession serves the whole test session, with its own warehouse and metastore
folder (Derby admits one JVM per folder). ``pymlc batch`` runs spawn their own JVM each, so they
get their own warehouse folders and are kept few. Without Java the tests fail, never skip:
``scripts/setup-java`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.spark_debris import STAGING_MARK
from pymlc.runtime_stub.spark_driver import main

ROOT = Path(__file__).resolve().parents[2]
FARE = ROOT / "specs" / "fare-estimator"
sys.path.insert(0, str(FARE))
from train import trips  # noqa: E402  (the spec's own data generator)

os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

# A model that scores like the fare estimator but raises once a worker has scored more than
# FAIL_AFTER rows: half-way through a job, after some batches reached the staging table.
FAILING_MODEL = """
from __future__ import annotations

import pathlib

import joblib
import pandas as pd

from pymlc import DataFrameModel

FAIL_AFTER = {fail_after}


class FailingModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.pipeline = joblib.load(artifacts / "model.joblib")
        self.scored = 0

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        self.scored += len(df)
        if self.scored > FAIL_AFTER:
            raise RuntimeError(f"deliberate failure after {{self.scored}} rows")
        features = df.assign(city=df["city"].fillna("unknown"))
        return pd.DataFrame({{"fare": self.pipeline.predict(features).astype("float64")}})
"""


def table_folder(spark: Any, table: str) -> Path:
    """The local folder holding ``table``'s files (its metastore location)."""
    from pymlc.runtime_stub.spark_table import TableName, describe_table

    found = describe_table(spark, TableName.parse(table))
    assert found is not None, f"no table {table}"
    return Path(found.location.removeprefix("file:"))


def run_job(config: Path, query: str, table: str, *, root: Path = FARE,
            mode: str | None = None, partition: tuple[str, ...] = ()) -> int:
    """Runs the batch driver in-process on the test session; returns its exit code."""
    argv = ["--query", query, "--output-table", table, "--model-root", str(root)]
    argv += [item for value in partition for item in ("--partition", value)]
    return main(argv + (["--mode", mode] if mode else []), config_path=config)


def snapshot(spark: Any, table: str) -> list[tuple[Any, ...]]:
    """The table's rows, sorted."""
    return sorted(tuple(r) for r in spark.table(table).collect())


def folders(spark: Any, database: str) -> list[str]:
    """The names of the folders in ``database``'s location."""
    location = spark.catalog.getDatabase(database).locationUri.removeprefix("file:")
    return sorted(p.name for p in Path(location).iterdir())


def no_debris(spark: Any, database: str) -> None:
    """Asserts that no staging table is left in ``database``, nor any folder that no table or
    partition uses (data lives in the folder of the staging table it was swapped from)."""
    from pymlc.runtime_stub.spark_table import TableName, describe_table, partition_location

    tables = [t.name for t in spark.catalog.listTables(database)]
    assert not [t for t in tables if STAGING_MARK in t], tables
    used = set()
    for table in tables:
        name = TableName(database, table)
        info = describe_table(spark, name)
        assert info is not None
        used.add(Path(info.location.removeprefix("file:")).name)
        for row in spark.sql(f"SHOW PARTITIONS {name.sql}").collect() if info.partitions else ():
            spec = tuple(tuple(p.split("=", 1)) for p in row[0].split("/"))
            used.add(Path(str(partition_location(spark, name, spec)).removeprefix("file:")).name)
    assert [f for f in folders(spark, database) if f not in used] == [], used


def _require_java() -> None:
    if shutil.which("java") is None:
        pytest.fail("Java is missing: the Spark tests need it. Run scripts/setup-java"
                    " (apt-get install -y openjdk-17-jre-headless)", pytrace=False)
    probe = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.fail(f"`java -version` failed: {probe.stderr.strip()}; run scripts/setup-java",
                    pytrace=False)


@pytest.fixture(scope="session")
def fare_model() -> Path:
    """The fare estimator's spec, with its trained artifact."""
    if not (FARE / "artifacts" / "model.joblib").is_file():
        subprocess.run([sys.executable, str(FARE / "train.py")], check=True)
    return FARE / "pyml.yaml"


@pytest.fixture(scope="session")
def fare_config(fare_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fare estimator's generated ``model.json``, built into a temporary folder."""
    out = tmp_path_factory.mktemp("fare-generated")
    write_tree(out, compile_spec(fare_model).artifacts)
    return out / "model.json"


@pytest.fixture(scope="session")
def trips_parquet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """100,000 synthetic trips (10% without a city) as one Parquet file, and as a frame."""
    frame = trips(100_000, seed=7)
    path = tmp_path_factory.mktemp("data") / "trips.parquet"
    frame.to_parquet(path, index=False)
    return path, frame


def make_failing_spec(folder: Path, fare_model: Path, *, fail_after: int) -> Path:
    """A copy of the fare estimator whose model raises after ``fail_after`` rows per worker,
    scoring in batches of 100 rows; its generated files are built beside it."""
    folder.mkdir(parents=True)
    shutil.copytree(fare_model.parent / "artifacts", folder / "artifacts")
    spec = (fare_model.parent / "pyml.yaml").read_text(encoding="utf-8")
    spec = spec.replace("entrypoint: model:FareModel", "entrypoint: failing_model:FailingModel")
    spec = spec.replace("  requirements: requirements.txt\n", "")
    spec = spec.replace("  write_mode: overwrite", "  write_mode: overwrite\n  rows_per_batch: 100")
    spec = spec.replace("examples:\n  input: examples/input.json\n  output: examples/output.json\n"
                        "  tolerance: {rtol: 1.0e-6, atol: 1.0e-9}\n", "")
    (folder / "pyml.yaml").write_text(spec, encoding="utf-8")
    (folder / "failing_model.py").write_text(
        textwrap.dedent(FAILING_MODEL.format(fail_after=fail_after)), encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return folder / "generated" / "model.json"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The test session's SparkSession: local, Hive metastore in its own folder."""
    _require_java()
    from pymlc.runtime_stub.spark_session import start_session

    warehouse = tmp_path_factory.mktemp("session-warehouse")
    session, _ = start_session(app="pymlc-tests", master="local[2]", warehouse=warehouse,
                               rows_per_batch=10_000, log=warehouse / "spark.log")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def java() -> None:
    """Fails (never skips) when Java is missing."""
    _require_java()
