"""Helpers for the gateway tests: real model servers and real gateways in child processes.

The gateway and the servers never run in the test process: their OIP stubs and tritonclient's
share the ``inference`` proto package, which one process can hold only once.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from servers import PYTHON, ROOT, SPECS, Server

from pymlc.gateway.haproxy import runtime_command, stat_table

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


def model_server(generated: Path, spec_dir: Path, socket: Path) -> Server:
    """``python -m pymlc.runtime_stub.serve`` on ``socket``."""
    return Server(generated, spec_dir, "--socket", str(socket))


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


def haproxy_stats(admin_socket: Path) -> dict[tuple[str, str], dict[str, str]]:
    """HAProxy's ``show stat`` through its runtime API: (proxy, server) -> the CSV row
    (server "BACKEND" is a backend's total, "FRONTEND" a frontend's)."""
    return stat_table(runtime_command(admin_socket, "show stat"))


def served(admin_socket: Path, proxy: str, server: str) -> int:
    """How many calls HAProxy sent to ``server`` of ``proxy`` (a backend: "BACKEND")."""
    return int(haproxy_stats(admin_socket)[(proxy, server)]["stot"])
