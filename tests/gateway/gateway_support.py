"""Helpers for the gateway tests: real model servers and real gateways in child processes.

The gateway and the servers never run in the test process: their OIP stubs and tritonclient's
share the ``inference`` proto package, which one process can hold only once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PYTHON = sys.executable
START_TIMEOUT = 120.0

FARE = SPECS / "fare-estimator"
DIGITS = SPECS / "digit-net"
FARE_ROWS: list[dict[str, Any]] = json.loads((FARE / "examples" / "input.json").read_text())
FARE_EXPECTED = [r["fare"] for r in json.loads((FARE / "examples" / "output.json").read_text())]
DIGIT_PIXELS = np.asarray(json.loads((DIGITS / "examples" / "input.json").read_text())["pixels"],
                          np.float32)
DIGIT_LABELS = json.loads((DIGITS / "examples" / "output.json").read_text())["label"]


def pymlc(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "pymlc", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


class Process:
    """A child process that prints a ready line on stderr; stopped with SIGTERM."""

    def __init__(self, command: Sequence[str], ready: str, *,
                 env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(list(command), env=env, cwd=ROOT, text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log: list[str] = []
        self.addresses: list[str] = []
        self._pattern = re.compile(ready)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.addresses:
            self.process.kill()
            self.stop()
            raise RuntimeError(f"{command[:4]} did not start:\n{self.text()}")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = self._pattern.search(line.strip())
            if found:
                self.addresses = found.group("addresses").split(", ")
                self._ready.set()
        self._ready.set()

    @property
    def unix(self) -> str:
        return next(a for a in self.addresses if a.startswith("unix:"))

    @property
    def tcp(self) -> str:
        return next(a for a in self.addresses if not a.startswith("unix:"))

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        self._reader.join(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def text(self) -> str:
        return "".join(self.log)


def model_server(generated: Path, spec_dir: Path, socket: Path) -> Process:
    """``python -m pymlc.runtime_stub.serve`` on ``socket``."""
    env = dict(os.environ, PYML_MODEL_CONFIG=str(generated / "model.json"),
               PYML_MODEL_ROOT=str(spec_dir), PYTHONPATH=str(ROOT))
    return Process([PYTHON, "-m", "pymlc.runtime_stub.serve", "--socket", str(socket)],
                   r"^pymlc: serving \S+ \S+ on (?P<addresses>.*)$", env=env)


GATEWAY_READY = r"^pymlc: gateway serving .* on (?P<addresses>.*)$"


def fare_inputs(rows: list[dict[str, Any]]) -> list[triton.InferInput]:
    columns = [("trip_distance_km", np.float64, "FP64"), ("pickup_hour", np.int32, "INT32"),
               ("passengers", np.int8, "INT8")]
    inputs = [_tensor(name, np.asarray([r[name] for r in rows], dtype), datatype)
              for name, dtype, datatype in columns]
    cities = np.asarray([(r["city"] or "").encode() for r in rows], dtype=object)
    nulls = np.asarray([r["city"] is None for r in rows])
    return [*inputs, _tensor("city", cities, "BYTES"), _tensor("city.nulls", nulls, "BOOL")]


def digit_inputs(pixels: np.ndarray[Any, Any]) -> list[triton.InferInput]:
    return [_tensor("pixels", pixels, "FP32")]


def _tensor(name: str, values: np.ndarray[Any, Any], datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values)
    return tensor


def stubs_module(generated: Path, module: str) -> tuple[Any, Any]:
    """The typed ``_pb2`` and ``_pb2_grpc`` modules of a built spec."""
    import importlib

    if str(generated) not in sys.path:
        sys.path.insert(0, str(generated))
    return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")


def serving_images(client: Any) -> dict[str, str]:
    """Build both example serving images (the layer cache makes a rebuild quick); name -> tag."""
    from pymlc.compiler.pipeline import compile_spec
    from pymlc.image import build_image

    if not (FARE / "artifacts" / "model.joblib").exists():
        subprocess.run([PYTHON, str(FARE / "train.py")], check=True, timeout=300)
    built = {}
    for spec in (FARE, DIGITS):
        compiled = compile_spec(spec / "pyml.yaml")
        built[compiled.plan.name] = build_image(compiled, target="serving", client=client).tags[0]
    return built
