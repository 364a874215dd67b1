"""The images as they run: the serving container with no network and a read-only root, called
over its bind-mounted Unix socket with plain gRPC (the generated typed stubs) and with
``pymlc predict``, healthy by its own HEALTHCHECK; the serving image without pyarrow; the batch
container's entrypoint scoring a Parquet file into a table read back from the host.

Each image is built once per session (cached layers make the builds quick after the first).
Every container is removed, also when a test fails.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.image import BuiltImage, build_image
from pymlc.runtime_stub import checks, codecs
from pymlc.runtime_stub.config import ModelConfig

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
UID = 10001
READY_S = 60.0
HEALTHY_S = 90.0
LABEL = "pymlc.test.serving-container"




def _spec(name: str) -> Path:
    spec = SPECS / name / "pyml.yaml"
    if name == "fare-estimator" and not (spec.parent / "artifacts" / "model.joblib").exists():
        subprocess.run([sys.executable, str(spec.parent / "train.py")], check=True, timeout=300)
    return spec


@pytest.fixture(scope="session")
def serving_images(engine: Any) -> dict[str, BuiltImage]:
    return {name: build_image(compile_spec(_spec(name)), target="serving", client=engine)
            for name in ("fare-estimator", "digit-net")}


@pytest.fixture(scope="session")
def fare_batch_image(engine: Any) -> BuiltImage:
    return build_image(compile_spec(_spec("fare-estimator")), target="batch",
                       client=engine)


@pytest.fixture()
def containers(engine: Any) -> Iterator[list[Any]]:
    """Containers a test starts; removed afterwards, whatever happened."""
    started: list[Any] = []
    yield started
    for container in started:
        container.remove(force=True)
    assert not engine.containers.list(all=True, ignore_removed=True, filters={"label": LABEL})


def _shared_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(folder, UID, UID)
    else:
        folder.chmod(0o777)
    return folder


def _run(engine: Any, image: str, command: list[str], folder: Path, target: str,
         **options: Any) -> Any:
    import docker

    return engine.containers.run(
        image, command, detach=True, network_mode="none", labels={LABEL: "1"},
        mounts=[docker.types.Mount(target, str(folder), type="bind")], **options)


def _wait_for_socket(container: Any, socket: Path) -> None:
    deadline = time.monotonic() + READY_S
    while not socket.exists():
        container.reload()
        assert container.status == "running", container.logs().decode()
        assert time.monotonic() < deadline, f"no socket after {READY_S} s"
        time.sleep(0.1)


def _wait_healthy(engine: Any, container: Any) -> str:
    deadline = time.monotonic() + HEALTHY_S
    while True:
        status = engine.api.inspect_container(container.id)["State"]["Health"]["Status"]
        if status != "starting" or time.monotonic() > deadline:
            return str(status)
        time.sleep(1.0)


def _stubs(spec: Path, folder: Path) -> tuple[ModelConfig, Any, Any]:
    """The model's config and its generated typed stubs (``_pb2`` and ``_pb2_grpc``)."""
    write_tree(folder, compile_spec(spec).artifacts)
    config = ModelConfig.load(folder / "model.json")
    sys.path.insert(0, str(folder))
    try:
        return (config, importlib.import_module(f"{config.proto_module}_pb2"),
                importlib.import_module(f"{config.proto_module}_pb2_grpc"))
    finally:
        sys.path.remove(str(folder))


def _start_serving(engine: Any, image: BuiltImage, tmp_path: Path,
                   containers: list[Any]) -> tuple[Any, Path]:
    # Exactly the brief's command: no network, read-only root, /tmp and the socket folder only.
    folder = _shared_folder(tmp_path / "run-pyml")
    container = _run(engine, image.id, [], folder, "/run/pyml", read_only=True,
                     tmpfs={"/tmp": ""})
    containers.append(container)
    socket = folder / "model.sock"
    _wait_for_socket(container, socket)
    return container, socket


# --- serving ---------------------------------------------------------------------------------

def test_fare_container_over_the_socket_with_typed_stubs_and_pymlc_predict(
        engine: Any, serving_images: dict[str, BuiltImage], tmp_path: Path,
        containers: list[Any]) -> None:
    spec = _spec("fare-estimator")
    container, socket = _start_serving(engine, serving_images["fare-estimator"],
                                       tmp_path, containers)
    config, pb2, pb2_grpc = _stubs(spec, tmp_path / "stubs")
    inputs, outputs = checks.column_specs(config.inputs), checks.column_specs(config.outputs)
    frame = checks.conform_columns(
        codecs.read_columns(spec.parent / "examples" / "input.json", inputs), inputs)
    want = [r["fare"] for r in json.loads((spec.parent / "examples" / "output.json").read_text())]
    request = codecs.typed_from_frame(pb2.PredictRequest(), frame, inputs)
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = pb2_grpc.FareEstimatorStub(channel)
        reply = stub.Predict(request, timeout=30)
        short = codecs.typed_from_frame(pb2.PredictRequest(), frame.drop(columns="pickup_hour"),
                                        [s for s in inputs if s.name != "pickup_hour"])
        with pytest.raises(grpc.RpcError) as bad:  # a missing column is named in the error
            stub.Predict(short, timeout=30)
    fares = codecs.columns_from_typed(reply, outputs)["fare"]
    np.testing.assert_allclose(fares, want, rtol=1e-6)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pickup_hour" in (bad.value.details() or "")  # required (a nullable one is null)

    done = subprocess.run([sys.executable, "-m", "pymlc", "predict", str(spec), "--input",
                           str(spec.parent / "examples" / "input.json"), "--socket",
                           str(socket), "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose([r["fare"] for r in json.loads(done.stdout)], want, rtol=1e-6)

    assert _wait_healthy(engine, container) == "healthy"
    attrs = engine.api.inspect_container(container.id)
    assert attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["Config"]["User"].split(":")[0] == str(UID)


def test_tensor_container_over_the_socket_and_healthy(
        engine: Any, serving_images: dict[str, BuiltImage], tmp_path: Path,
        containers: list[Any]) -> None:
    spec = _spec("digit-net")
    container, socket = _start_serving(engine, serving_images["digit-net"], tmp_path,
                                       containers)
    config, pb2, pb2_grpc = _stubs(spec, tmp_path / "stubs")
    inputs = checks.tensor_specs(config.inputs)
    tensors = checks.conform_tensors(
        codecs.read_tensors(spec.parent / "examples" / "input.json", inputs), inputs)
    want = json.loads((spec.parent / "examples" / "output.json").read_text())
    request = codecs.typed_from_tensors(pb2.PredictRequest(), tensors, inputs)
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        reply = pb2_grpc.DigitNetStub(channel).Predict(request, timeout=30)
    got = codecs.tensors_from_typed(reply, checks.tensor_specs(config.outputs))
    labels, probabilities = got["label"], got["probabilities"]
    assert labels.tolist() == want["label"]
    np.testing.assert_allclose(probabilities, want["probabilities"], rtol=1e-5, atol=1e-6)

    done = subprocess.run([sys.executable, "-m", "pymlc", "predict", str(spec), "--input",
                           str(spec.parent / "examples" / "input.json"), "--socket",
                           str(socket), "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == want["label"]
    assert _wait_healthy(engine, container) == "healthy"


def test_serving_image_runs_without_pyarrow(engine: Any,
                                            serving_images: dict[str, BuiltImage]) -> None:
    for image in serving_images.values():
        def python(code: str, image: BuiltImage = image) -> tuple[int, str]:
            container = engine.containers.run(
                image.id, ["-c", code], entrypoint="python", network_mode="none", detach=True,
                read_only=True, labels={LABEL: "1"})
            try:
                status = container.wait(timeout=120)
                return int(status["StatusCode"]), container.logs().decode()
            finally:
                container.remove(force=True)

        code, out = python("import pymlc.runtime_stub.serve, pymlc.runtime_stub.grpc_server,"
                           " pymlc.runtime_stub.health, sys; print(sorted(m for m in"
                           " sys.modules if m.startswith('pyarrow')))")
        assert (code, out.strip()) == (0, "[]"), out
        code, out = python("import pyarrow")
        assert code == 1 and "No module named 'pyarrow'" in out


# --- batch -----------------------------------------------------------------------------------

def test_batch_container_scores_parquet_into_a_table_read_from_the_host(
        engine: Any, fare_batch_image: BuiltImage, tmp_path: Path,
        containers: list[Any]) -> None:
    spec = _spec("fare-estimator")
    rows = json.loads((spec.parent / "examples" / "input.json").read_text())
    want = [r["fare"] for r in json.loads((spec.parent / "examples" / "output.json").read_text())]
    data = _shared_folder(tmp_path / "data")
    table = pa.table({
        "trip_id": pa.array([f"trip-{i}" for i in range(len(rows))]),
        "trip_distance_km": pa.array([r["trip_distance_km"] for r in rows], pa.float64()),
        "city": pa.array([r["city"] for r in rows], pa.string()),
        "pickup_hour": pa.array([r["pickup_hour"] for r in rows], pa.int32()),
        "passengers": pa.array([r["passengers"] for r in rows], pa.int8()),
    })
    pq.write_table(table, data / "input.parquet")
    container = _run(engine, fare_batch_image.id,
                     ["--query", "SELECT * FROM parquet.`/data/input.parquet`",
                      "--output-table", "scores.fares", "--warehouse", "/data/warehouse"],
                     data, "/data", hostname="localhost")
    containers.append(container)
    status = container.wait(timeout=600)
    logs = container.logs().decode()
    assert status["StatusCode"] == 0, logs[-4000:]
    assert "pymlc batch: done: 8 rows written to scores.fares" in logs
    files = sorted((data / "warehouse").glob("scores.db/fares/part-*.parquet"))
    assert files, sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    scored = pa.concat_tables([pq.read_table(f) for f in files]).to_pydict()
    assert scored.keys() == {"trip_id", "fare"}
    by_trip = dict(zip(scored["trip_id"], scored["fare"], strict=True))
    np.testing.assert_allclose([by_trip[f"trip-{i}"] for i in range(len(rows))], want,
                               rtol=1e-6)
