"""``pymlc gateway`` against the real Docker engine: fare-estimator and digit-net behind one
gateway, their serving containers started on the first request with no network, a read-only
root and the spec's limits; a killed container restarted; an idle one stopped; a missing image
UNAVAILABLE with the reason; SIGTERM removing every container the gateway started.

The data path is HAProxy (``auto`` picks it where ``haproxy`` is installed, as in CI): calls to
a model with a running container go straight to its socket, the rest to the Python gateway;
``--data-path python`` still serves on its own. HAProxy never outlives the gateway.

Never skipped: without an engine these tests fail and say how to start one. Every container
the tests cause is removed, on failure too (by the gateway's label).
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.service_pb2 as oip
from gateway_support import (
    DIGIT_LABELS,
    DIGIT_PIXELS,
    FARE,
    FARE_EXPECTED,
    FARE_ROWS,
    PymlcGateway,
    digit_inputs,
    fare_inputs,
    processes,
    pymlc,
    served,
    serving_images,
)
from tritonclient.utils import InferenceServerException

from pymlc.gateway import LABEL

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def images(engine: Any) -> dict[str, str]:
    """Both serving images, built once per session."""
    return serving_images(engine)


@pytest.fixture(scope="session")
def routes(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gateway-build")
    done = pymlc("build", FARE / "pyml.yaml", FARE.parent / "digit-net" / "pyml.yaml", "-o", out)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "routes.json").read_text())
    assert {m["name"]: m["image"] for m in data["models"]} == images
    return out / "routes.json"


@pytest.fixture
def start_gateway(engine: Any, routes: Path) -> Iterator[Any]:
    started: list[PymlcGateway] = []

    def start(*args: str, routes_file: Path = routes) -> PymlcGateway:
        started.append(PymlcGateway(engine, routes_file, *args))
        return started[-1]

    yield start
    for gateway in started:
        gateway.close()


@pytest.fixture(scope="module")
def shared(engine: Any, routes: Path) -> Iterator[PymlcGateway]:
    gateway = PymlcGateway(engine, routes)
    yield gateway
    assert gateway.close() == 0, gateway.text()


def _infer_fare(target: str) -> np.ndarray[Any, Any]:
    result = triton.InferenceServerClient(target).infer("fare-estimator", fare_inputs(FARE_ROWS))
    values: np.ndarray[Any, Any] = result.as_numpy("fare")
    return values


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_container_starts_on_the_first_request_and_sigterm_removes_it(
        start_gateway: Any) -> None:
    gateway = start_gateway()
    assert gateway.containers() == [], "no container may run before the first request"
    assert gateway.data_path == "haproxy" and len(gateway.haproxy_pids()) == 1, gateway.text()
    np.testing.assert_allclose(_infer_fare(gateway.tcp), FARE_EXPECTED, rtol=1e-9)
    [container] = gateway.containers()
    assert container.labels["pymlc.model"] == "fare-estimator"
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert (host["NanoCpus"], host["Memory"]) == (1_000_000_000, 1024 * 1024 * 1024)
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert "/tmp" in host["Tmpfs"]
    [mount] = container.attrs["Mounts"]
    assert mount["Destination"] == "/run/pyml" and mount["Source"].startswith(str(gateway.state))
    assert gateway.stop() == 0, gateway.text()
    assert gateway.containers() == [], "SIGTERM must remove every container it started"
    assert not any(gateway.state.iterdir()), "the sockets' folders must be removed"
    assert gateway.haproxy_pids() == [], "HAProxy outlived the gateway"


@pytest.mark.parametrize("data_path", ["haproxy", "python"])
def test_a_clean_stop_removes_the_socket(start_gateway: Any, tmp_path: Path,
                                         data_path: str) -> None:
    socket_path = tmp_path / "gw.sock"
    gateway = start_gateway("--socket", str(socket_path), "--data-path", data_path)
    assert gateway.data_path == data_path and socket_path.is_socket()
    assert triton.InferenceServerClient(f"unix:{socket_path}").is_server_live()
    assert gateway.stop() == 0, gateway.text()
    assert not socket_path.exists(), "the socket outlived a clean shutdown"


def test_haproxy_dies_with_a_killed_gateway(start_gateway: Any) -> None:
    gateway = start_gateway()
    [pid] = gateway.haproxy_pids()
    gateway.process.kill()  # no chance to clean up: the kernel must end HAProxy
    _wait(lambda: gateway.haproxy_pids() == [], 10, f"HAProxy {pid} to die with the gateway")


@pytest.fixture(params=["haproxy", "python"])
def any_path(request: pytest.FixtureRequest, shared: PymlcGateway,
             start_gateway: Any) -> PymlcGateway:
    """The shared gateway (HAProxy, chosen by auto) or one with ``--data-path python``."""
    if request.param == "haproxy":
        assert shared.data_path == "haproxy", shared.text()
        return shared
    gateway: PymlcGateway = start_gateway("--data-path", "python")
    assert gateway.data_path == "python" and gateway.haproxy_pids() == []
    return gateway


def test_two_models_behind_one_gateway(any_path: PymlcGateway) -> None:
    shared = any_path
    np.testing.assert_allclose(_infer_fare(shared.tcp), FARE_EXPECTED, rtol=1e-9)
    client = triton.InferenceServerClient(shared.tcp)
    result = client.infer("digit-net", digit_inputs(DIGIT_PIXELS))
    assert result.as_numpy("label").tolist() == DIGIT_LABELS
    assert result.get_response().model_version == "2.0.1"
    assert [m for m in client.get_server_metadata().extensions] == [
        "model:digit-net/2.0.1", "model:fare-estimator/1.4.0"]
    assert len(shared.running("fare-estimator")) == len(shared.running("digit-net")) == 1


def test_calls_to_a_running_model_bypass_the_python_gateway(shared: PymlcGateway) -> None:
    np.testing.assert_allclose(_infer_fare(shared.tcp), FARE_EXPECTED, rtol=1e-9)  # running
    backend = "fare-estimator:1.4.0"
    before = served(shared.admin, backend, "model"), served(shared.admin, backend, "python")
    for _ in range(3):
        np.testing.assert_allclose(_infer_fare(shared.tcp), FARE_EXPECTED, rtol=1e-9)
    after = served(shared.admin, backend, "model"), served(shared.admin, backend, "python")
    assert (after[0] - before[0], after[1] - before[1]) == (3, 0)
    # 1000 rows (~40 kB) do not fit HAProxy's 16 kB buffer: the Python gateway carries them
    python = served(shared.admin, "python", "BACKEND")
    result = triton.InferenceServerClient(shared.tcp).infer("fare-estimator",
                                                            fare_inputs(FARE_ROWS * 125))
    np.testing.assert_allclose(result.as_numpy("fare"), FARE_EXPECTED * 125, rtol=1e-9)
    assert served(shared.admin, "python", "BACKEND") == python + 1


def test_a_request_haproxy_cannot_read_reaches_its_model_through_python(shared: PymlcGateway
                                                                         ) -> None:
    # The request id before the model name: valid protobuf, but not the bytes HAProxy matches.
    message = oip.ModelInferRequest(id="first").SerializeToString() + oip.ModelInferRequest(
        model_name="digit-net", model_version="2.0.1").SerializeToString()
    pixels = oip.ModelInferRequest()
    pixels.inputs.add(name="pixels", datatype="FP32", shape=list(DIGIT_PIXELS.shape))
    pixels.raw_input_contents.append(DIGIT_PIXELS.tobytes())
    before = served(shared.admin, "python", "BACKEND")
    with grpc.insecure_channel(shared.tcp) as channel:
        reply = oip.ModelInferResponse.FromString(channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer")(message + pixels.SerializeToString(),
                                                          timeout=120))
    assert (reply.model_name, reply.model_version, reply.id) == ("digit-net", "2.0.1", "first")
    assert np.frombuffer(reply.raw_output_contents[0], np.int64).tolist() == DIGIT_LABELS
    assert served(shared.admin, "python", "BACKEND") == before + 1


def test_an_unknown_model_is_not_found(shared: PymlcGateway) -> None:
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(shared.tcp).infer("no-such-model", fare_inputs(FARE_ROWS))
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "digit-net/2.0.1, fare-estimator/1.4.0" in caught.value.message()


def test_a_bad_request_stays_invalid_argument(shared: PymlcGateway) -> None:
    pixels = DIGIT_PIXELS[:, :4, :]  # 8x4 images: the spec says 8x8
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(shared.tcp).infer("digit-net", digit_inputs(pixels))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "pixels" in caught.value.message()


def test_a_killed_container_is_restarted(shared: PymlcGateway) -> None:
    np.testing.assert_allclose(_infer_fare(shared.tcp), FARE_EXPECTED, rtol=1e-9)
    [before] = shared.running("fare-estimator")
    before.kill()
    for _ in range(3):  # the very next request succeeds, and the ones after it
        np.testing.assert_allclose(_infer_fare(shared.tcp), FARE_EXPECTED, rtol=1e-9)
    [after] = shared.running("fare-estimator")
    assert after.id != before.id
    _wait(lambda: before.id not in {c.id for c in shared.containers()}, 10,
          "the dead container's removal")


def test_an_idle_container_is_stopped(start_gateway: Any) -> None:
    gateway = start_gateway("--idle-timeout", "1")
    np.testing.assert_allclose(_infer_fare(gateway.tcp), FARE_EXPECTED, rtol=1e-9)
    assert len(gateway.running("fare-estimator")) == 1
    _wait(lambda: gateway.containers() == [], 15, "the idle container to stop")
    np.testing.assert_allclose(_infer_fare(gateway.tcp), FARE_EXPECTED, rtol=1e-9)


def test_calls_through_haproxy_keep_a_container_from_idling(start_gateway: Any) -> None:
    gateway = start_gateway("--idle-timeout", "1")
    np.testing.assert_allclose(_infer_fare(gateway.tcp), FARE_EXPECTED, rtol=1e-9)
    [container] = gateway.running("fare-estimator")
    fast = served(gateway.admin, "fare-estimator:1.4.0", "model")
    client = triton.InferenceServerClient(gateway.tcp)  # one connection: streams on it count
    until = time.monotonic() + 4
    while time.monotonic() < until:  # busy for 4 s, on the fast path only
        result = client.infer("fare-estimator", fare_inputs(FARE_ROWS))
        np.testing.assert_allclose(result.as_numpy("fare"), FARE_EXPECTED, rtol=1e-9)
        time.sleep(0.3)
    client.close()
    assert served(gateway.admin, "fare-estimator:1.4.0", "model") - fast >= 10
    assert [c.id for c in gateway.running("fare-estimator")] == [container.id]
    _wait(lambda: gateway.containers() == [], 15, "the idle container to stop")


def test_a_taken_port_fails_the_start_in_plain_words(routes: Path, engine: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        state = tempfile.mkdtemp(prefix="gw-")
        done = pymlc("gateway", routes, "--port", str(port), "--state-dir", state,
                     "--start", "eager", timeout=300)
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "choose another --port" in done.stderr
    _assert_left_nothing(engine, done.stderr, state)


def test_haproxys_own_start_failure_is_reported(routes: Path, engine: Any,
                                                tmp_path: Path) -> None:
    state = tempfile.mkdtemp(prefix="gw-")
    socket_path = tmp_path / "no-such-folder" / "gw.sock"
    done = pymlc("gateway", routes, "--socket", socket_path, "--state-dir", state,
                 timeout=300)
    assert done.returncode == 1, done.stderr
    assert f"HAProxy could not start listening on unix:{socket_path}" in done.stderr
    assert "--data-path python" in done.stderr
    _assert_left_nothing(engine, done.stderr, state)


def _assert_left_nothing(engine: Any, stderr: str, state: str) -> None:
    instance = next(line.split()[2].rstrip(":") for line in stderr.splitlines()
                    if "labelled" in line)
    assert engine.containers.list(all=True, ignore_removed=True,
                                  filters={"label": f"{LABEL}={instance}"}) == []
    assert processes("haproxy", state) == []
    assert not any(Path(state).iterdir())


def test_eager_start_runs_every_model_before_serving(start_gateway: Any) -> None:
    gateway = start_gateway("--start", "eager")
    models = sorted(c.labels["pymlc.model"] for c in gateway.containers())
    assert models == ["digit-net", "fare-estimator"]


def test_eager_restarts_a_killed_container_before_any_request(start_gateway: Any) -> None:
    # No request reaches the gateway: only the engine's `die` event can tell it.
    gateway = start_gateway("--start", "eager")
    [before] = gateway.running("fare-estimator")
    before.kill()
    _wait(lambda: [c.id for c in gateway.running("fare-estimator")] not in ([], [before.id]),
          30, "a new fare-estimator container")
    assert before.id not in {c.id for c in gateway.containers()}
    assert any("died" in line and "restarting it" in line for line in gateway.log)
    np.testing.assert_allclose(_infer_fare(gateway.tcp), FARE_EXPECTED, rtol=1e-9)


def test_a_missing_image_is_unavailable_with_the_reason(start_gateway: Any, routes: Path,
                                                        tmp_path: Path) -> None:
    data = json.loads(routes.read_text())
    data["models"][1]["image"] = "pymlc-test/never-built:0.0.0"
    broken = tmp_path / "routes.json"
    broken.write_text(json.dumps(data))
    gateway = start_gateway(routes_file=broken)
    with pytest.raises(InferenceServerException) as caught:
        _infer_fare(gateway.tcp)
    assert caught.value.status() == "StatusCode.UNAVAILABLE"
    assert "pymlc-test/never-built:0.0.0 is not in the local Docker engine" in \
        caught.value.message()
    assert gateway.containers() == []
    result = triton.InferenceServerClient(gateway.tcp).infer("digit-net",
                                                             digit_inputs(DIGIT_PIXELS))
    assert result.as_numpy("label").tolist() == DIGIT_LABELS
