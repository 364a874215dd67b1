"""``pymlc batch`` run as a user runs it, for the adversarial batch tests: a child process whose
stderr is read line by line as it comes, its process tree, and the warehouse's bytes.

The model (``slow-scorer``) doubles ``x`` and sleeps ``SLOW_SECONDS`` per batch of 100 rows (the
variable reaches the Python workers through the job's environment), so a test can catch a job in
the middle of its scoring.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree

SPEC = """\
pyml: 1
name: slow-scorer
version: 1.0.0
model: {kind: dataframe, entrypoint: "slow:Slow"}
inputs: [{name: x, type: float64}]
outputs: [{name: y, type: float64}]
batch: {passthrough: [id], rows_per_batch: 100}
"""
MODEL = """
from __future__ import annotations

import os
import time

import pandas as pd

from pymlc import DataFrameModel


class Slow(DataFrameModel):
    def __init__(self, artifacts):
        self.pause = float(os.environ.get("SLOW_SECONDS", "0"))

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        time.sleep(self.pause)
        return pd.DataFrame({"y": df["x"] * 2.0})
"""
# Files of a warehouse that are not tables: Derby's, the jobs' logs, the warehouse lock.
NOT_TABLES = re.compile(r"^(metastore_db|derby\.log|logs|\.pymlc-batch\.lock)(/|$)")


def slow_spec(folder: Path) -> Path:
    """The slow scorer's spec in ``folder``, built (its ``generated/`` up to date)."""
    folder.mkdir(parents=True)
    (folder / "pyml.yaml").write_text(SPEC, encoding="utf-8")
    (folder / "slow.py").write_text(textwrap.dedent(MODEL), encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return folder / "pyml.yaml"


def numbers(path: Path, rows: int) -> Path:
    """``rows`` rows of ``id`` and ``x`` as Parquet, in row groups of 1,000."""
    frame = pd.DataFrame({"id": np.arange(rows, dtype=np.int64),
                          "x": np.arange(rows, dtype=np.float64) / 7})
    frame.to_parquet(path, index=False, row_group_size=1_000)
    return path


class Batch:
    """One ``pymlc batch`` process; its stderr lines are collected as they arrive."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None
                 ) -> None:
        full_env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pymlc", "batch", *args], cwd=cwd, env=full_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:  # until every writer (the job too) closed it
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 300.0) -> str:
        """The first stderr line matching ``pattern`` (a regex); fails on EOF or timeout."""
        found = re.compile(pattern)
        for line in self.lines:
            if found.search(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line /{pattern}/ within {timeout:.0f} s:\n"
                                     + "\n".join(self.lines[-40:])) from None
            if line is None:
                raise AssertionError(f"stderr ended without /{pattern}/:\n"
                                     + "\n".join(self.lines[-40:]))
            self.lines.append(line)
            if found.search(line):
                return line

    def finish(self, timeout: float = 600.0) -> str:
        """Waits for the process and for every writer of its stderr; the whole stderr."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def living(pids: set[int]) -> set[int]:
    """The processes among ``pids`` that still run (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def wait_gone(pids: set[int], timeout: float = 120.0) -> set[int]:
    """Polls until none of ``pids`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while living(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return living(pids)


def table_bytes(warehouse: Path) -> dict[str, str]:
    """Every file and folder of the warehouse's tables (Derby and logs aside): path -> sha256
    (folders: "")."""
    found = {}
    for path in sorted(warehouse.rglob("*")):
        relative = path.relative_to(warehouse).as_posix()
        if not NOT_TABLES.match(relative):
            found[relative] = "" if path.is_dir() else hashlib.sha256(
                path.read_bytes()).hexdigest()
    return found
