"""Helpers for the serving tests: build a spec into a temp folder and run real server processes.

Servers always run as child processes, as in production; the test process holds tritonclient,
whose ``inference`` proto package the runtime then borrows (see ``oip``) if it imports it.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PYTHON = sys.executable
START_TIMEOUT = 120.0


def build(spec_dir: Path, out: Path) -> Path:
    """Compile ``spec_dir/pyml.yaml`` into ``out`` (never the spec's own generated/)."""
    subprocess.run([PYTHON, "-m", "pymlc", "build", str(spec_dir / "pyml.yaml"), "-o", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    return out


def stubs(generated: Path, module: str) -> tuple[ModuleType, ModuleType]:
    """Import the typed ``_pb2`` and ``_pb2_grpc`` modules of a built spec."""
    if str(generated) not in sys.path:
        sys.path.insert(0, str(generated))
    return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")


def model_env(generated: Path, spec_dir: Path) -> dict[str, str]:
    env = dict(os.environ, PYML_MODEL_CONFIG=str(generated / "model.json"),
               PYML_MODEL_ROOT=str(spec_dir), PYTHONPATH=str(ROOT))
    env.pop("PYML_LOG_LEVEL", None)
    return env


class Server:
    """``python -m pymlc.runtime_stub.serve`` in a child process, stopped with SIGTERM."""

    def __init__(self, generated: Path, spec_dir: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "pymlc.runtime_stub.serve", *args], env=model_env(generated, spec_dir),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.log: list[str] = []
        self._ready = threading.Event()
        self.addresses: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.addresses:
            self.process.kill()
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = re.match(r"pymlc: serving \S+ \S+ on (.*)$", line.strip())
            if found:
                self.addresses = found.group(1).split(", ")
                self._ready.set()
        self._ready.set()

    @property
    def unix(self) -> str:
        return next(a for a in self.addresses if a.startswith("unix:"))

    @property
    def tcp(self) -> str:
        return next(a for a in self.addresses if not a.startswith("unix:"))

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return code

    def text(self) -> str:
        return "".join(self.log)


PROBE_SPEC = """\
pyml: 1
name: probe
version: 0.3.0
description: A test model that sleeps, raises or breaks its contract on request
model:
  kind: dataframe
  entrypoint: model:Probe
inputs:
  - {name: x, type: float64}
  - {name: delay_ms, type: int32}
  - {name: day, type: date, nullable: true}
  - {name: label, type: string, nullable: true}
outputs:
  - {name: y, type: float64}
  - {name: day_out, type: date, nullable: true}
  - {name: label_length, type: int64, nullable: true}
serving:
  max_message_bytes: 65536
  timeout_ms: 5000
  threads: 4
"""

PROBE_MODEL = '''\
"""x < 0 raises; x == 13 returns a wrong column; delay_ms sleeps; else y = 2x."""

import time

import pandas as pd

from pymlc import DataFrameModel


class Probe(DataFrameModel):
    def __init__(self, artifacts):
        self.artifacts = artifacts

    def predict(self, df):
        if (df["x"] < 0).any():
            raise ValueError("x must not be negative")
        time.sleep(float(df["delay_ms"].max()) / 1000)
        if (df["x"] == 13).any():
            return pd.DataFrame({"unlucky": df["x"]})
        lengths = pd.array([None if s is None else len(s) for s in df["label"]], dtype="Int64")
        return pd.DataFrame({"y": df["x"] * 2, "day_out": df["day"], "label_length": lengths})
'''


def write_probe(folder: Path) -> Path:
    """A spec folder with the probe model; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyml.yaml").write_text(PROBE_SPEC)
    (folder / "model.py").write_text(PROBE_MODEL)
    return folder
