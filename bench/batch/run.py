"""Batch benchmark: 1,000,000 trips from Parquet through ``pymlc batch``, against two floors.

* **pandas**: one process reads the Parquet file, calls the model's ``predict`` on the whole
  frame, writes Parquet (the model is loaded beforehand): what a data scientist runs by hand.
* **Spark copy**: the same query copied into a table by the same local Spark, no Python step:
  the ceiling of any Spark job on this machine.

Two models: the fare estimator (a ridge regression: cheap, so the data path dominates) and
``costly/costly.pyml.yaml`` (100 gradient-boosted trees: the model dominates; not named
``pyml.yaml``, so that ``pymlc check .`` does not take it for one of the repository's models).
Spark's start-up (JVM, session, Hive metastore) is reported apart; job times start once Spark
is up and include the query's analysis and checks, Python worker start-up, model loading, the
staging table and the swap (the copy's time likewise includes its query's analysis).

The machine is shared and noisy, so the runs alternate (copy, each model, pandas, then again)
for ``--repeat`` rounds and the table shows medians. ``--baseline DIR`` also runs, alternating,
``pymlc batch`` from another checkout (e.g. a ``git worktree`` of an older commit): A/B in one
run. Run: ``python bench/batch/run.py`` (``--rows N`` for a quicker look); prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
from pyspark.sql import Observation, functions as F
from pymlc.runtime_stub.spark_session import start_session
started = time.perf_counter()
spark, _ = start_session(app="bench-copy", master=None, warehouse=Path(sys.argv[2]),
                         rows_per_batch=50000)
print(f"Spark ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
started = time.perf_counter()
spark.sql("CREATE DATABASE IF NOT EXISTS bench")
rows = Observation()
spark.sql(sys.argv[1]).observe(rows, F.count(F.lit(1)).alias("n")).write.format(
    "parquet").saveAsTable("bench.copy")
print(f"done: {rows.get['n']} rows written to bench.copy in {time.perf_counter() - started:.1f}"
      " s", file=sys.stderr)
spark.stop()
"""
_READY = re.compile(r"Spark ready in ([\d.]+) s")
_DONE = re.compile(r"done: (\d+) rows \w+ to \S+ in ([\d.]+) s")


def make_data(rows: int) -> Path:
    path = OUT / f"trips-{rows}.parquet"
    if not path.exists():
        sys.path.insert(0, str(FARE))
        from train import trips  # type: ignore[import-not-found]

        OUT.mkdir(exist_ok=True)
        # Row groups of 100k rows, as a Spark or Hive writer leaves them: splittable.
        trips(rows, seed=11).to_parquet(path, index=False, row_group_size=100_000)
    return path


def ensure_artifacts() -> None:
    if not (FARE / "artifacts" / "model.joblib").exists():
        subprocess.run([sys.executable, str(FARE / "train.py")], check=True)
    if not (COSTLY / "out" / "model.joblib").exists():
        subprocess.run([sys.executable, str(COSTLY / "costly_model.py")], check=True)


def _timed(command: list[str], warehouse: Path, env: dict[str, str] | None = None,
           ) -> tuple[float, float, int]:
    shutil.rmtree(warehouse, ignore_errors=True)
    result = subprocess.run(command, env=env or ENV, capture_output=True, text=True, check=False)
    ready, done = _READY.search(result.stderr), _DONE.search(result.stderr)
    if result.returncode != 0 or not ready or not done:
        sys.exit(f"{' '.join(command[:4])} failed:\n{result.stderr[-4000:]}")
    return float(ready.group(1)), float(done.group(2)), int(done.group(1))


def run_pymlc(spec: Path, query: str, name: str, checkout: Path | None = None,
              ) -> tuple[float, float, int]:
    warehouse = OUT / f"wh-{name}"
    env = {**ENV, "PYTHONPATH": str(checkout)} if checkout else None
    return _timed([sys.executable, "-m", "pymlc", "batch", str(spec),
                   "--query", query, "--output-table", "bench.scores",
                   "--warehouse", str(warehouse)], warehouse, env)


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
    scored: Any = model.predict(frame[INPUTS])
    scored.insert(0, "trip_id", frame["trip_id"].to_numpy())
    scored.to_parquet(OUT / f"pandas-{config.name}.parquet", index=False)
    return time.perf_counter() - started, len(scored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--baseline", type=Path, help="another checkout's pymlc, run A/B")
    args = parser.parse_args()
    ensure_artifacts()
    data = make_data(args.rows)
    query = f"SELECT * FROM parquet.`{data}`"
    variants = {"": None, **({" (baseline)": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[tuple[float, float, int]]] = {}
    for round_ in range(args.repeat):
        runs.setdefault("copy", []).append(run_copy(query))
        for label, spec in MODELS.items():
            for suffix, checkout in variants.items():
                runs.setdefault(label + suffix, []).append(
                    run_pymlc(spec, query, spec.parent.name, checkout))
            seconds, rows = run_pandas(spec, data)
            runs.setdefault("pandas " + label, []).append((0.0, seconds, rows))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1][1]:.1f} s" for k, v in runs.items()),
              file=sys.stderr, flush=True)
    _report(runs, variants)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _report(runs: dict[str, list[tuple[float, float, int]]], variants: dict[str, Any]) -> None:
    copy_start = _median([r[0] for r in runs["copy"]])
    copy_job = _median([r[1] for r in runs["copy"]])
    rows = runs["copy"][0][2]
    print(f"| model | rows | Spark start-up s | pymlc batch job s | rows/s | pandas rows/s"
          f" | Spark copy rows/s | vs Spark copy | vs pandas |\n|{'---|' * 9}")
    for label in MODELS:
        pandas_rate = rows / _median([r[1] for r in runs["pandas " + label]])
        for suffix in variants:
            done = runs[label + suffix]
            start, job = _median([r[0] for r in done]), _median([r[1] for r in done])
            rate, copy_rate = rows / job, rows / copy_job
            print(f"| {label}{suffix} | {rows:,} | {start:.1f} | {job:.1f} | {rate:,.0f}"
                  f" | {pandas_rate:,.0f} | {copy_rate:,.0f} | {rate / copy_rate:.2f}x"
                  f" | {rate / pandas_rate:.2f}x |")
    print(f"\nSpark copy: start-up {copy_start:.1f} s, {rows:,} rows in {copy_job:.1f} s"
          f" (medians of {len(runs['copy'])} alternating rounds); cores: {os.cpu_count()}")
    print("all runs (job s): " + "; ".join(
        f"{k}: {', '.join(f'{r[1]:.1f}' for r in v)}" for k, v in runs.items()))


if __name__ == "__main__":
    main()
