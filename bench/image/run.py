"""Image benchmark: sizes of the serving and batch images against the base image, the cold build
time (``--no-cache``) and the rebuild time after an edit to ``model.py`` only.

Usage: ``python bench/image/run.py [--repeat N] [--no-batch]`` (needs the Docker engine and the
local base image: ``sudo scripts/setup-docker``).

Builds go through the real engine. Cold builds run ``pymlc image --no-cache`` in a subprocess
(start-up included); pip downloads afresh each time (the images keep no pip cache). Rebuilds run
``pymlc image`` on a scratch copy of each spec after appending a comment to its ``model.py``; the
median of ``--repeat`` runs is reported.

"Added by pymlc" is the serving image's size minus the base image minus the model's own
requirements, the latter measured as the layer that ``pip install -r requirements.txt`` alone adds
to a fresh venv on the same base (so a package both the model and the runtime need, such as
numpy, counts as the model's). Goals: rebuild < 10 s; added by pymlc < 150 MB. Exit status 0
when both are met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
GOAL_REBUILD_S = 10.0
GOAL_ADDED_MB = 150.0
MB = 1e6
# The model's own requirements, alone in a venv on the same base: what they weigh by themselves.
REQUIREMENTS_ONLY = """FROM {base}
RUN python3 -m venv /opt/v
COPY requirements.txt /tmp/requirements.txt
RUN /opt/v/bin/pip install --no-cache-dir -q -r /tmp/requirements.txt
"""


@dataclass
class Row:
    spec: str
    target: str
    size: float = 0.0
    cold_s: float = 0.0
    rebuild_s: float | None = None
    requirements: float | None = None
    base: float = 0.0
    packages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def added(self) -> float | None:
        if self.requirements is None:
            return None
        return self.size - self.base - self.requirements


def pymlc_image(spec: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pymlc", "image", str(spec), "--format", "json",
                           *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"pymlc image {spec} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result, seconds


def requirements_size(client: Any, spec_dir: Path, base: str) -> float:
    with tempfile.TemporaryDirectory(prefix="pymlc-bench-") as tmp:
        Path(tmp, "Dockerfile").write_text(REQUIREMENTS_ONLY.format(base=base))
        shutil.copy(spec_dir / "requirements.txt", Path(tmp, "requirements.txt"))
        tag = f"pymlc-bench/requirements-{spec_dir.name}:latest"
        for chunk in client.api.build(path=tmp, tag=tag, decode=True, network_mode="host",
                                      rm=True, forcerm=True):
            if "error" in chunk:
                sys.exit(f"requirements-only build of {spec_dir.name} failed: {chunk['error']}")
    top = client.api.history(tag)[0]
    assert "pip install" in top["CreatedBy"], top
    client.images.remove(tag)
    return float(top["Size"])


def rebuild_seconds(spec_dir: Path, repeat: int) -> float:
    with tempfile.TemporaryDirectory(prefix="pymlc-bench-") as tmp:
        copy = Path(tmp) / spec_dir.name
        shutil.copytree(spec_dir, copy, ignore=shutil.ignore_patterns("generated", "__pycache__"))
        spec = copy / "pyml.yaml"
        text = spec.read_text()
        spec.write_text(text.replace(f"name: {spec_dir.name}\n", f"name: {spec_dir.name}-bench\n"))
        first, _ = pymlc_image(spec)  # warm: everything but the model's files is cached
        times = []
        for run in range(repeat):
            with (copy / "model.py").open("a") as handle:
                handle.write(f"\n# bench edit {run}\n")
            result, seconds = pymlc_image(spec)
            pip = [s for s in result["steps"] if s["instruction"].startswith("RUN pip install")]
            assert pip and all(s["cached"] for s in pip), "the rebuild re-ran pip"
            times.append(seconds)
        for tag in {*first["tags"], *result["tags"]}:
            subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], capture_output=True)
    return statistics.median(times)


def largest_packages(client: Any, image: str, count: int = 8) -> list[tuple[str, float]]:
    """The biggest entries of the image's venv site-packages (run with no network)."""
    script = f"du -sk /opt/pyml/venv/lib/python3*/site-packages/* | sort -n | tail -n {count}"
    out = client.containers.run(image, ["-c", script], entrypoint="sh", network_mode="none",
                                remove=True).decode()
    sizes = [line.split("\t") for line in out.strip().splitlines()]
    return [(Path(path).name, int(kb) * 1024 / MB) for kb, path in reversed(sizes)]


def measure(args: argparse.Namespace) -> list[Row]:
    import docker

    from pymlc.compiler.pipeline import compile_spec

    client = docker.from_env()
    cases = [("digit-net", "serving"), ("fare-estimator", "serving")]
    if not args.no_batch:
        cases.append(("digit-net", "batch"))
    rows = []
    for name, target in cases:
        spec_dir = SPECS / name
        base = compile_spec(spec_dir / "pyml.yaml").plan.image.base
        row = Row(name, target, base=float(client.api.inspect_image(base)["Size"]))
        print(f"{name} {target}: cold build ...", file=sys.stderr, flush=True)
        result, row.cold_s = pymlc_image(spec_dir / "pyml.yaml", "--target", target,
                                         "--no-cache")
        row.size = float(result["size"])
        if target == "serving":
            print(f"{name}: requirements alone, rebuild x{args.repeat} ...", file=sys.stderr,
                  flush=True)
            row.requirements = requirements_size(client, spec_dir, base)
            row.rebuild_s = rebuild_seconds(spec_dir, args.repeat)
            row.packages = largest_packages(client, result["image"])
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| spec | target | image MB | base MB | model reqs MB | added by pymlc MB"
             " | cold build s | rebuild s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        req = f"{r.requirements / MB:.0f}" if r.requirements is not None else "-"
        added = f"{r.added / MB:.0f}" if r.added is not None else "-"
        rebuild = f"{r.rebuild_s:.1f}" if r.rebuild_s is not None else "-"
        lines.append(f"| {r.spec} | {r.target} | {r.size / MB:.0f} | {r.base / MB:.0f} | {req}"
                     f" | {added} | {r.cold_s:.1f} | {rebuild} |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.rebuild_s is not None:
            ok = "ok" if r.rebuild_s < GOAL_REBUILD_S else "MISSED"
            out.append(f"{r.spec}: rebuild {r.rebuild_s:.1f} s (goal < {GOAL_REBUILD_S:.0f} s):"
                       f" {ok}")
        if r.added is not None:
            ok = "ok" if r.added / MB < GOAL_ADDED_MB else "MISSED"
            out.append(f"{r.spec}: added by pymlc {r.added / MB:.0f} MB"
                       f" (goal < {GOAL_ADDED_MB:.0f} MB): {ok}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rebuilds per spec (median)")
    parser.add_argument("--no-batch", action="store_true", help="skip the batch target")
    args = parser.parse_args()
    rows = measure(args)
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(f"- {line}")
    for r in rows:
        if r.packages:
            biggest = ", ".join(f"{name} {size:.0f}" for name, size in r.packages)
            print(f"- {r.spec} {r.target}, largest in the venv (MB): {biggest}")
    sys.exit(1 if any(line.endswith("MISSED") for line in verdicts(rows)) else 0)


if __name__ == "__main__":
    main()
