"""Compile benchmark: ``pymlc build`` and a no-op ``pymlc check`` over 100 generated specs.

Usage: ``python bench/compile/run.py [--specs N] [--repeat N] [--keep DIR]``

The specs differ in name, kind (dataframe or tensor), number and types of columns, nullability,
shapes and optional sections. Build and check run in this process through ``pymlc.cli.main``
(interpreter start-up excluded), after one warm-up build of a single spec elsewhere so that
import time is not charged to the first spec; each is repeated on a fresh copy and the median
reported. One ``pymlc build`` subprocess of a single spec is timed for reference (start-up
included). Goals: build <= 50 ms per spec; no-op check of 100
specs < 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

COLUMN_TYPES = ("bool", "int8", "int16", "int32", "int64", "float32", "float64", "string",
                "binary", "date", "timestamp")
TENSOR_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32",
                 "float64")
GOAL_BUILD_PER_SPEC = 0.050
GOAL_CHECK_TOTAL = 3.0
MODEL = "from pymlc import DataFrameModel, TensorModel\n\n\nclass Model({base}):\n    pass\n"


def spec_text(index: int, rng: random.Random) -> str:
    kind = "tensor" if index % 3 == 2 else "dataframe"
    lines = ["pyml: 1", f"name: bench-model-{index:03d}",
             f"version: {rng.randint(0, 5)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
             f"description: Benchmark model number {index}, {kind} kind",
             "model:", f"  kind: {kind}", "  entrypoint: model:Model"]
    lines += ["inputs:", *_fields(kind, rng, rng.randint(1, 40), "in")]
    lines += ["outputs:", *_fields(kind, rng, rng.randint(1, 5), "out")]
    if rng.random() < 0.5:
        lines += ["serving:", f"  port: {8000 + index}", f"  timeout_ms: {rng.randint(10, 5000)}"]
    if kind == "dataframe" and rng.random() < 0.5:
        lines += ["batch:", "  passthrough: [row_id]", "  write_mode: append"]
    if rng.random() < 0.3:
        lines += ["image:", f"  base: python:3.1{rng.randint(0, 2)}-slim",
                  f"  repository: registry.example.com/bench/model-{index}"]
    return "\n".join(lines) + "\n"


def _fields(kind: str, rng: random.Random, count: int, prefix: str) -> list[str]:
    fields = []
    for n in range(count):
        if kind == "tensor":
            dims = ", ".join(str(rng.choice((-1, 1, 3, 8, 28))) for _ in range(rng.randint(1, 4)))
            fields.append(f"  - {{name: {prefix}_{n}, dtype: {rng.choice(TENSOR_DTYPES)},"
                          f" shape: [{dims}]}}")
        else:
            nullable = ", nullable: true" if rng.random() < 0.3 else ""
            fields.append(f"  - {{name: {prefix}_{n}, type: {rng.choice(COLUMN_TYPES)}{nullable}}}")
    return fields


def write_specs(root: Path, count: int) -> list[Path]:
    rng = random.Random(20240501)  # fixed: every run benchmarks the same specs
    specs = []
    for index in range(count):
        folder = root / f"model-{index:03d}"
        folder.mkdir(parents=True)
        text = spec_text(index, rng)
        base = "TensorModel" if "kind: tensor" in text else "DataFrameModel"
        (folder / "model.py").write_text(MODEL.format(base=base), encoding="utf-8")
        (folder / "pyml.yaml").write_text(text, encoding="utf-8")
        specs.append(folder / "pyml.yaml")
    return specs


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def timed_cli(args: list[str]) -> float:
    from pymlc.cli import main

    start = time.perf_counter()
    with quiet():
        status = main(args)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"pymlc {' '.join(args)} exited {status}")
    return elapsed


def run(count: int, root: Path, repeat: int) -> dict[str, float]:
    specs = write_specs(root / "specs", count)
    warm = root / "warm-up"
    shutil.copytree(specs[0].parent, warm)
    timed_cli(["build", str(warm)])  # imports, template compilation, protoc's first load
    builds, checks = [], []
    for attempt in range(repeat):  # each build starts from a fresh copy: it writes every file
        models = root / f"models-{attempt}"
        shutil.copytree(root / "specs", models)
        builds.append(timed_cli(["build", str(models)]))
        checks.append(timed_cli(["check", str(models)]))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pymlc", "build", str(warm / "pyml.yaml")], check=True,
                   capture_output=True, env={**os.environ, "NO_COLOR": "1"})
    subprocess_one = time.perf_counter() - start
    return {"specs": count, "build": statistics.median(builds),
            "check": statistics.median(checks), "subprocess": subprocess_one}


def profile_check(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pymlc-bench-") as tmp:
        write_specs(Path(tmp), count)
        timed_cli(["build", tmp])
        profiler = cProfile.Profile()
        profiler.runcall(timed_cli, ["check", tmp])
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(r"pymlc|yaml|protoc|jinja2|pydantic", 25)


def report(result: dict[str, float]) -> str:
    count = int(result["specs"])
    build, check = result["build"], result["check"]
    ok_build = build / count <= GOAL_BUILD_PER_SPEC
    ok_check = check < GOAL_CHECK_TOTAL * count / 100
    rows = [
        "| step | total | per spec | goal | met |",
        "|---|---:|---:|---|---|",
        f"| `pymlc build DIR` ({count} specs, in-process, median) | {build:.2f} s |"
        f" {build / count * 1e3:.1f} ms | <= {GOAL_BUILD_PER_SPEC * 1e3:.0f} ms/spec |"
        f" {'yes' if ok_build else 'NO'} |",
        f"| `pymlc check DIR` no-op ({count} specs, in-process, median) | {check:.2f} s |"
        f" {check / count * 1e3:.1f} ms | < {GOAL_CHECK_TOTAL:.0f} s/100 specs |"
        f" {'yes' if ok_check else 'NO'} |",
        f"| `pymlc build SPEC` (1 spec, subprocess, start-up included) | {result['subprocess']:.2f}"
        " s | | reference | |",
    ]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--profile", action="store_true",
                        help="also print where a no-op check spends its time (cProfile)")
    args = parser.parse_args()
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
        result = run(args.specs, args.keep, args.repeat)
    else:
        with tempfile.TemporaryDirectory(prefix="pymlc-bench-") as tmp:
            result = run(args.specs, Path(tmp), args.repeat)
    print(report(result))
    if args.profile:
        profile_check(args.specs)
    met = (result["build"] / args.specs <= GOAL_BUILD_PER_SPEC
           and result["check"] < GOAL_CHECK_TOTAL * args.specs / 100)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
