"""Batch benchmark: 1,000,000 trips from Parquet through ``pymlc batch``, against two floors.

* **pandas**: one process reads the Parquet file, calls the model's ``predict`` on the whole
  frame, writes Parquet (the model is loaded beforehand): what a data scientist runs by hand.
* **Spark copy**: the same query copied into a table by the same local Spark, no Python step:
  the ceiling of any Spark job on this machine.

Two models: the fare estimator (a ridge regression: cheap, so the data path dominates) and
``costly/costly.pyml.yaml`` (100 gradient-boosted trees: the model dominates; not named
``pyml.yaml``, so that ``pymlc check .`` does not take it for one of the repository's models).
Spark's start-up (JVM, session, Hive metastore) is reported apart; job times start once Spark
is up and include Python worker start-up, model loading, the staging table and the swap.
Run: ``python bench/batch/run.py`` (``--rows N`` for a quicker look); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "out"
FARE = ROOT / "specs" / "fare-estimator"
COSTLY = HERE / "costly"
MODELS = {"fare-estimator (ridge)": FARE / "pyml.yaml",
          "costly (100 trees)": COSTLY / "costly.pyml.yaml"}
INPUTS = ["trip_distance_km", "city", "pickup_hour", "passengers"]
ENV = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}

_COPY = """
import sys, time
from pathlib import Path
from pymlc.runtime_stub.spark_session import start_session
started = time.perf_counter()
spark, _ = start_session(app="bench-copy", master=None, warehouse=Path(sys.argv[2]),
                         rows_per_batch=50000)
print(f"Spark ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
spark.sql("CREATE DATABASE IF NOT EXISTS bench")
started = time.perf_counter()
spark.sql(sys.argv[1]).write.format("parquet").saveAsTable("bench.copy")
rows = spark.table("bench.copy").count()
print(f"done: {rows} rows written to bench.copy in {time.perf_counter() - started:.1f} s",
      file=sys.stderr)
spark.stop()
"""
_READY = re.compile(r"Spark ready in ([\d.]+) s")
_DONE = re.compile(r"done: (\d+) rows \w+ to \S+ in ([\d.]+) s")


def make_data(rows: int) -> Path:
    path = OUT / f"trips-{rows}.parquet"
    if not path.exists():
        sys.path.insert(0, str(FARE))
        from train import trips

        OUT.mkdir(exist_ok=True)
        # Row groups of 100k rows, as a Spark or Hive writer leaves them: splittable.
        trips(rows, seed=11).to_parquet(path, index=False, row_group_size=100_000)
    return path


def ensure_artifacts() -> None:
    if not (FARE / "artifacts" / "model.joblib").exists():
        subprocess.run([sys.executable, str(FARE / "train.py")], check=True)
    if not (COSTLY / "out" / "model.joblib").exists():
        subprocess.run([sys.executable, str(COSTLY / "costly_model.py")], check=True)


def _timed(command: list[str], warehouse: Path) -> tuple[float, float, int]:
    shutil.rmtree(warehouse, ignore_errors=True)
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, check=False)
    ready, done = _READY.search(result.stderr), _DONE.search(result.stderr)
    if result.returncode != 0 or not ready or not done:
        sys.exit(f"{' '.join(command[:4])} failed:\n{result.stderr[-4000:]}")
    return float(ready.group(1)), float(done.group(2)), int(done.group(1))


def run_pymlc(spec: Path, query: str, name: str) -> tuple[float, float, int]:
    warehouse = OUT / f"wh-{name}"
    return _timed([sys.executable, "-m", "pymlc", "batch", str(spec),
                   "--query", query, "--output-table", "bench.scores",
                   "--warehouse", str(warehouse)], warehouse)


def run_copy(query: str) -> tuple[float, float, int]:
    warehouse = OUT / "wh-copy"
    return _timed([sys.executable, "-c", _COPY, query, str(warehouse)], warehouse)


def run_pandas(spec: Path, data: Path) -> tuple[float, int]:
    from pymlc.compiler.pipeline import compile_spec
    from pymlc.compiler.write import write_tree
    from pymlc.runtime_stub.config import ModelConfig
    from pymlc.runtime_stub.loader import load_model

    generated = OUT / f"generated-{spec.parent.name}"
    write_tree(generated, compile_spec(spec).artifacts)
    config = ModelConfig.load(generated / "model.json")
    model = load_model(config, spec.parent)
    started = time.perf_counter()
    frame = pd.read_parquet(data)
    scored = model.predict(frame[INPUTS])  # type: ignore[arg-type]
    scored.insert(0, "trip_id", frame["trip_id"].to_numpy())
    scored.to_parquet(OUT / f"pandas-{config.name}.parquet", index=False)
    return time.perf_counter() - started, len(scored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    ensure_artifacts()
    data = make_data(args.rows)
    query = f"SELECT * FROM parquet.`{data}`"
    copy_start, copy_job, copy_rows = run_copy(query)
    copy_rate = copy_rows / copy_job
    print(f"| model | rows | Spark start-up s | pymlc batch job s | rows/s | pandas rows/s"
          f" | Spark copy rows/s | vs Spark copy | vs pandas |\n|{'---|' * 9}")
    for label, spec in MODELS.items():
        start, job, rows = run_pymlc(spec, query, spec.parent.name)
        pandas_s, pandas_rows = run_pandas(spec, data)
        rate, pandas_rate = rows / job, pandas_rows / pandas_s
        print(f"| {label} | {rows:,} | {start:.1f} | {job:.1f} | {rate:,.0f} | {pandas_rate:,.0f}"
              f" | {copy_rate:,.0f} | {rate / copy_rate:.2f}x | {rate / pandas_rate:.2f}x |",
              flush=True)
    print(f"\nSpark copy: start-up {copy_start:.1f} s, {copy_rows:,} rows in {copy_job:.1f} s;"
          f" cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
