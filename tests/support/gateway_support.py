"""Helpers for the gateway tests (tests/gateway and the attacks in tests/adversarial): real
model servers and real gateways in child processes, and model images built from copies of the
example specs.

The gateway and the servers never run in the test process: their OIP stubs and tritonclient's
share the ``inference`` proto package, which one process can hold only once.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from servers import PYTHON, ROOT, SPECS, Process, Server

from pymlc.gateway import LABEL
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


class PymlcGateway(Process):
    """``pymlc gateway ROUTES --port 0`` in a child process, with a short state folder of its
    own; knows its instance id and its containers."""

    def __init__(self, engine: Any, routes: Path, *args: str) -> None:
        self.engine = engine
        self.state = Path(tempfile.mkdtemp(prefix="gw-"))  # short: socket paths max 107 bytes
        super().__init__([PYTHON, "-m", "pymlc", "gateway", str(routes), "--port", "0",
                          "--state-dir", str(self.state), *args], GATEWAY_READY)
        self.instance = next(line.split()[2].rstrip(":") for line in self.log
                             if line.startswith("pymlc: gateway ") and "labelled" in line)
        self.admin = self.state / self.instance / "haproxy.sock"  # HAProxy's runtime API

    @property
    def data_path(self) -> str:
        line = next(line for line in self.log if "labelled" in line)
        return line.split(" data path ")[1].split()[0]

    def haproxy_pids(self) -> list[int]:
        """HAProxy processes started for this gateway (their config is in its state folder)."""
        return processes("haproxy", str(self.state))

    def containers(self) -> list[Any]:
        return containers(self.engine, self.instance)

    def running(self, model: str) -> list[Any]:
        return [c for c in self.containers()
                if c.labels.get("pymlc.model") == model and c.status == "running"]

    def close(self) -> int:
        """Stop it (SIGTERM); remove whatever a failed test left behind."""
        try:
            return self.stop()
        finally:
            for container in self.containers():
                container.remove(force=True)
            shutil.rmtree(self.state, ignore_errors=True)


def containers(engine: Any, instance: str) -> list[Any]:
    """Every container of one gateway instance, running or not."""
    return list(engine.containers.list(all=True, ignore_removed=True,
                                       filters={"label": f"{LABEL}={instance}"}))


def processes(name: str, argument: str) -> list[int]:
    """The pids of the running programs called ``name`` with ``argument`` in an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        if argv and Path(argv[0].decode()).name == name and \
                any(argument in a.decode() for a in argv[1:]):
            found.append(int(entry.name))
    return found


def fare_copy(folder: Path, name: str, *, model: str | None = None) -> Path:
    """A copy of the fare-estimator spec in ``folder`` named ``name``, its image
    ``pymlc-test/NAME`` (so that no other test's build replaces it); ``model`` replaces its
    model.py. Returns the spec file."""
    train_fare()
    shutil.copytree(FARE, folder, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    spec = folder / "pyml.yaml"
    text = spec.read_text()
    for old, new in (("name: fare-estimator\n", f"name: {name}\n"),
                     ("  repository: registry.example.com/ml/fare-estimator\n",
                      f"  repository: pymlc-test/{name}\n")):
        assert old in text
        text = text.replace(old, new)
    spec.write_text(text)
    if model is not None:
        (folder / "model.py").write_text(model)
    return spec


def train_fare() -> None:
    if not (FARE / "artifacts" / "model.joblib").exists():
        subprocess.run([PYTHON, str(FARE / "train.py")], check=True, timeout=300)


def build_serving_image(client: Any, spec: Path) -> list[str]:
    """Build the serving image of ``spec`` (the layer cache makes a rebuild quick); its tags."""
    from pymlc.compiler.pipeline import compile_spec
    from pymlc.image import build_image

    return list(build_image(compile_spec(spec), target="serving", client=client).tags)


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

    train_fare()
    built = {}
    for spec in (FARE / "pyml.yaml", DIGITS / "pyml.yaml"):
        built[compile_spec(spec).plan.name] = build_serving_image(client, spec)[0]
    return built


def haproxy_stats(admin_socket: Path) -> dict[tuple[str, str], dict[str, str]]:
    """HAProxy's ``show stat`` through its runtime API: (proxy, server) -> the CSV row
    (server "BACKEND" is a backend's total, "FRONTEND" a frontend's)."""
    return stat_table(runtime_command(admin_socket, "show stat"))


def served(admin_socket: Path, proxy: str, server: str) -> int:
    """How many calls HAProxy sent to ``server`` of ``proxy`` (a backend: "BACKEND")."""
    return int(haproxy_stats(admin_socket)[(proxy, server)]["stot"])
