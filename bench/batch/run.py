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
for ``--repeat`` rounds and the table shows medians. That is the **cold** table: each job is a
``pymlc batch`` process of its own, so it pays a cold JVM's JIT and a cold Python worker.

The **steady** table (``steady.py``) times the same work in one long-lived local session once
its JVM is warm: for ``--repeat`` rounds after a discarded warm-up round, the copy, a no-op
Python step over the columns pymlc reads, read and written as pymlc's workers do (the floor of
pymlc's data path) and pymlc's driver in-process for each model, alternating with the pandas
floor run here. ``--no-cold`` and
``--no-steady`` run one section only. ``--baseline DIR`` also runs, alternating,
``pymlc batch`` from another checkout (e.g. a ``git worktree`` of an older commit): A/B in one
run. Run: ``python bench/batch/run.py`` (``--rows N`` for a quicker look); prints Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "out"
FARE = ROOT / "specs" / "fare-estimator"
COSTLY = HERE / "costly"
MODELS = {"fare-estimator (ridge)": FARE / "pyml.yaml",
          "costly (100 trees)": COSTLY / "costly.pyml.yaml"}
INPUTS = ["trip_distance_km", "city", "pickup_hour", "passengers"]
# The goal for each model: (the floor it is measured against, the ratio to reach).
GOALS = {"fare-estimator (ridge)": ("copy", 0.8), "costly (100 trees)": ("pandas", 0.75)}
ENV = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}

_COPY = """
import sys, time
from pathlib import Path
from pyspark.sql import Observation, functions as F
from pymlc.runtime_stub.spark_session import start_session
started = time.perf_counter()
spark, _ = start_session(app="bench-copy", master=None, warehouse=Path(sys.argv[2]),
                         rows_per_batch=50000, log=Path(sys.argv[2]) / "copy.log")
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


def generate(spec: Path) -> Path:
    """Compile ``spec`` into ``out/generated-NAME`` (its ``model.json`` and the rest)."""
    from pymlc.compiler.pipeline import compile_spec
    from pymlc.compiler.write import write_tree

    generated = OUT / f"generated-{spec.parent.name}"
    write_tree(generated, compile_spec(spec).artifacts)
    return generated


def run_pandas(spec: Path, data: Path) -> tuple[float, int]:
    from pymlc.runtime_stub.config import ModelConfig
    from pymlc.runtime_stub.loader import load_model

    config = ModelConfig.load(generate(spec) / "model.json")
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
    parser.add_argument("--baseline", type=Path, help="another checkout's pymlc, run A/B"
                        " (cold section only)")
    parser.add_argument("--no-cold", dest="cold", action="store_false",
                        help="skip the cold rounds (a pymlc batch process per job)")
    parser.add_argument("--no-steady", dest="steady", action="store_false",
                        help="skip the steady rounds (one warm session)")
    args = parser.parse_args()
    ensure_artifacts()
    data = make_data(args.rows)
    query = f"SELECT * FROM parquet.`{data}`"
    if args.cold:
        run_cold(args, data, query)
    if args.steady:
        if args.cold:
            print()
        run_steady(args.repeat, data, query)


def run_cold(args: argparse.Namespace, data: Path, query: str) -> None:
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
        print(f"cold round {round_ + 1}: "
              + ", ".join(f"{k} {v[-1][1]:.1f} s" for k, v in runs.items()),
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


def run_steady(repeat: int, data: Path, query: str) -> None:
    """One ``steady.py`` child; its rounds alternate with the pandas floor run here."""
    warehouse = OUT / "wh-steady"
    shutil.rmtree(warehouse, ignore_errors=True)
    log = OUT / "steady.log"  # the child's stderr: Spark's and the driver's progress lines
    order = ["copy", "no-op", *MODELS, *(f"pandas {label}" for label in MODELS)]
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in order}
    with log.open("w") as err, subprocess.Popen(
            [sys.executable, str(HERE / "steady.py"), query, str(warehouse)], env=ENV,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True) as child:
        assert child.stdin is not None and child.stdout is not None
        for round_ in range(repeat + 1):  # round 0 warms the JVM up and is discarded
            done = _steady_round(child.stdin, child.stdout, round_, log)
            for label, spec in MODELS.items():
                done["pandas " + label] = run_pandas(spec, data)
            print(f"steady round {round_}{' (warm-up, discarded)' * (round_ == 0)}: "
                  + ", ".join(f"{k} {done[k][0]:.2f} s" for k in order),
                  file=sys.stderr, flush=True)
            if round_:
                for name in order:
                    runs[name].append(done[name])
        child.stdin.close()
        if child.wait() != 0:
            sys.exit(f"steady.py failed (exit {child.returncode}):\n{log.read_text()[-4000:]}")
    _report_steady(runs)


def _steady_round(stdin: IO[str], stdout: IO[str], round_: int, log: Path,
                  ) -> dict[str, tuple[float, int]]:
    stdin.write(f"round {round_}\n")
    with contextlib.suppress(BrokenPipeError):
        stdin.flush()
    done: dict[str, tuple[float, int]] = {}
    for line in stdout:
        if line.strip() == "end":
            return done
        _, name, seconds, rows = line.split()
        label = next((k for k, v in MODELS.items() if v.parent.name == name), name)
        done[label] = (float(seconds), int(rows))
    sys.exit(f"steady.py stopped in round {round_}:\n{log.read_text()[-4000:]}")


def _report_steady(runs: dict[str, list[tuple[float, int]]]) -> None:
    rows = runs["copy"][0][1]
    bad = {k: [r[1] for r in v] for k, v in runs.items() if any(r[1] != rows for r in v)}
    if bad:
        sys.exit(f"row counts differ from the copy's {rows:,}: {bad}")
    rate = {k: rows / _median([r[0] for r in v]) for k, v in runs.items()}
    print(f"| model (steady state) | rows | pymlc job s | rows/s | Spark copy rows/s"
          f" | no-op data path rows/s | pandas rows/s | vs copy | vs no-op | vs pandas"
          f" | goal | goal met |\n|{'---|' * 12}")
    for label in MODELS:
        job = _median([r[0] for r in runs[label]])
        floors = {"copy": "copy", "no-op": "no-op", "pandas": "pandas " + label}
        ratio = {name: rate[label] / rate[key] for name, key in floors.items()}
        goal_floor, goal = GOALS[label]
        met = "yes" if ratio[goal_floor] >= goal else "no"
        print(f"| {label} | {rows:,} | {job:.2f} | {rate[label]:,.0f} | {rate['copy']:,.0f}"
              f" | {rate['no-op']:,.0f} | {rate[floors['pandas']]:,.0f}"
              f" | {ratio['copy']:.2f}x | {ratio['no-op']:.2f}x | {ratio['pandas']:.2f}x"
              f" | >= {goal:.2f}x {goal_floor} | {met} |")
    print(f"\nSteady state: one local session, medians of {len(runs['copy'])} rounds after one"
          f" discarded warm-up round; cores: {os.cpu_count()}")
    print("all runs (job s): " + "; ".join(
        f"{k}: {', '.join(f'{r[0]:.2f}' for r in v)}" for k, v in runs.items()))


if __name__ == "__main__":
    main()
