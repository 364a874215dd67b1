"""The routing gateway without Docker (its Kubernetes form): ``python -m
pymlc.runtime_stub.gateway`` in front of two versions of a model, each a real server process
on its own Unix socket. Routing by name and version (latest by default), NOT_FOUND, the
model's own status codes passed through, the typed service, health, reflection, server
metadata, readiness that follows the model servers, and a SIGTERM drain.

Then HAProxy in front, as `pymlc gateway` runs it (generated config, runtime API): the calls it
can route by their first bytes go straight to the model servers, the others to the Python
gateway; a disabled or refused server leaves its calls to the Python gateway."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.service_pb2 as oip
from gateway_support import (
    GATEWAY_READY,
    PYTHON,
    haproxy_stats,
    model_server,
    pymlc,
    served,
)
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from servers import Process, stubs
from tritonclient.utils import InferenceServerException

from pymlc.gateway.haproxy import HAProxy, HAProxyBinary, find_haproxy
from pymlc.gateway.haproxy_config import ModelServer
from pymlc.runtime_stub.gateway import Route, peek_model, version_key

pytestmark = pytest.mark.slow  # model servers, gateways and HAProxy as child processes

SPEC = """\
pyml: 1
name: echo
version: {version}
description: y = x times a factor that differs between versions; x < 0 raises
model:
  kind: dataframe
  entrypoint: model:Echo
inputs:
  - {{name: x, type: float64}}
  - {{name: delay_ms, type: int32}}
outputs:
  - {{name: y, type: float64}}
serving:
  timeout_ms: 10000
"""

MODEL = '''\
"""y = FACTOR * x after delay_ms; a negative x raises. A slow call says when it has begun."""

import sys
import time

import pandas as pd

from pymlc import DataFrameModel

FACTOR = {factor}


class Echo(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df):
        if (df["x"] < 0).any():
            raise ValueError("x must not be negative")
        if df["delay_ms"].max() > 0:
            print("{in_predict}", file=sys.stderr, flush=True)
        time.sleep(float(df["delay_ms"].max()) / 1000)
        return pd.DataFrame({{"y": df["x"] * FACTOR}})
'''

VERSIONS = {"1.0.0": 2.0, "1.1.0": 3.0}
IN_PREDICT = "echo: a slow call is in predict"
WAIT_S = 60  # generous: the machine may be loaded
TYPED = "pyml.echo.v1.Echo"

T = TypeVar("T")


def _spec(root: Path, version: str, factor: float) -> tuple[Path, Path]:
    folder = root / version
    folder.mkdir(parents=True)
    (folder / "pyml.yaml").write_text(SPEC.format(version=version))
    (folder / "model.py").write_text(MODEL.format(factor=factor, in_predict=IN_PREDICT))
    generated = root / f"gen-{version}"
    done = pymlc("build", folder / "pyml.yaml", "-o", generated)
    assert done.returncode == 0, done.stderr
    return folder, generated


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("echo")
    servers: dict[str, Process] = {}
    generated: dict[str, Path] = {}
    try:
        for version, factor in VERSIONS.items():
            folder, generated[version] = _spec(root, version, factor)
            servers[version] = model_server(generated[version], folder, root / f"{version}.sock")
        yield {"servers": servers, "generated": generated, "root": root}
    finally:
        for server in servers.values():
            server.stop()


def _gateway(routes: dict[str, str], *extra: str) -> Process:
    command = [PYTHON, "-m", "pymlc.runtime_stub.gateway", "--port", "0", *extra]
    for model, target in routes.items():
        command += ["--route", f"{model}={target}"]
    return Process(command, GATEWAY_READY)


@pytest.fixture(scope="module")
def gateway(echo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    socket = tmp_path_factory.mktemp("gw") / "gateway.sock"
    routes = {f"echo@{v}": s.unix for v, s in echo["servers"].items()}
    running = _gateway(routes, "--socket", str(socket), "--service", f"{TYPED}=echo@1.1.0")
    _wait_serving(running.tcp)
    yield running
    assert running.stop() == 0, running.text()


def _inputs(x: list[float], delay_ms: int = 0, x_type: str = "FP64") -> list[triton.InferInput]:
    values = np.asarray(x, np.float64 if x_type == "FP64" else np.int64)
    tensors = [triton.InferInput("x", [len(x)], x_type),
               triton.InferInput("delay_ms", [len(x)], "INT32")]
    tensors[0].set_data_from_numpy(values)
    tensors[1].set_data_from_numpy(np.full(len(x), delay_ms, np.int32))
    return tensors


def _wait_in_predict(server: Process, calls: int) -> None:
    """Waits until ``calls`` slow calls in all have begun in the echo model on ``server``."""
    deadline = time.monotonic() + WAIT_S
    while server.text().count(IN_PREDICT) < calls:
        assert time.monotonic() < deadline, f"no slow call reached the model:\n{server.text()}"
        time.sleep(0.05)


def _poll(read: Callable[[], int], want: int) -> int:
    """Reads until ``read()`` returns ``want`` or ``WAIT_S`` pass; returns the last reading."""
    deadline = time.monotonic() + WAIT_S
    while (value := read()) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def _stop_during_a_slow_call(target: str, model: Process,
                             stop: Callable[[], T]) -> tuple[T, list[Any]]:
    """Start a 1.5 s echo call on ``target``, call ``stop`` once it is inside the model (served
    by ``model``), wait for the call.

    Returns:
        What ``stop`` returned and the call's outputs (empty if it failed).
    """
    results: list[Any] = []
    before = model.text().count(IN_PREDICT)

    def slow_call() -> None:
        client = triton.InferenceServerClient(target)
        results.append(client.infer("echo", _inputs([2.0], delay_ms=1500)).as_numpy("y"))

    caller = threading.Thread(target=slow_call)
    caller.start()
    _wait_in_predict(model, before + 1)
    stopped = stop()
    caller.join(WAIT_S)
    return stopped, results


def _health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


def _wait_serving(target: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _health(target) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, f"{target} never became ready"
        time.sleep(0.1)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_latest_version_by_default_and_a_named_version_on_request(gateway: Process,
                                                                  transport: str) -> None:
    client = triton.InferenceServerClient(gateway.unix if transport == "unix" else gateway.tcp)
    latest = client.infer("echo", _inputs([1.0, 2.5]), request_id="r-7")
    np.testing.assert_array_equal(latest.as_numpy("y"), [3.0, 7.5])
    assert latest.get_response().model_version == "1.1.0"
    assert latest.get_response().id == "r-7"
    older = client.infer("echo", _inputs([1.0, 2.5]), model_version="1.0.0")
    np.testing.assert_array_equal(older.as_numpy("y"), [2.0, 5.0])
    assert client.is_model_ready("echo", "1.0.0")
    assert client.get_model_metadata("echo").versions == ["1.1.0"]


def test_unknown_models_and_versions_are_not_found(gateway: Process) -> None:
    client = triton.InferenceServerClient(gateway.tcp)
    for name, version in (("no-such-model", ""), ("echo", "9.9.9")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer(name, _inputs([1.0]), model_version=version)
        assert caught.value.status() == "StatusCode.NOT_FOUND"
        assert "echo/1.0.0, echo/1.1.0" in caught.value.message()


def test_the_model_status_passes_through_with_its_details(gateway: Process) -> None:
    client = triton.InferenceServerClient(gateway.tcp)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", _inputs([1.0], x_type="INT64"))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "x" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", _inputs([-1.0]))
    assert caught.value.status() == "StatusCode.INTERNAL"
    assert "ValueError: x must not be negative" in caught.value.message()
    np.testing.assert_array_equal(client.infer("echo", _inputs([1.0])).as_numpy("y"), [3.0])


def test_bytes_that_are_not_a_message_are_invalid_argument(gateway: Process) -> None:
    with grpc.insecure_channel(gateway.tcp) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a\x7f", timeout=5)  # a name field longer than the message
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(gateway.tcp) as channel:
        call = channel.unary_unary("/no.Such/Method")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_the_typed_service_is_forwarded(gateway: Process, echo: dict[str, Any]) -> None:
    pb2, pb2_grpc = stubs(echo["generated"]["1.1.0"], "echo_v1")
    request = pb2.PredictRequest(x={"values": [1.0, 4.0]}, delay_ms={"values": [0, 0]})
    with grpc.insecure_channel(gateway.unix) as channel:
        reply = pb2_grpc.EchoStub(channel).Predict(request, timeout=10)
    assert list(reply.y.values) == [3.0, 12.0]


def test_health_reflection_and_server_metadata(gateway: Process) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(gateway.tcp) == serving
    assert _health(gateway.tcp, "pymlc.gateway") == serving
    assert _health(gateway.tcp, "inference.GRPCInferenceService") == serving
    client = triton.InferenceServerClient(gateway.tcp)
    meta = client.get_server_metadata()
    assert (meta.name, list(meta.extensions)) == (
        "pymlc-gateway", ["model:echo/1.0.0", "model:echo/1.1.0"])
    assert client.is_server_live() and client.is_server_ready()
    with grpc.insecure_channel(gateway.tcp) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health", TYPED} <= names


def _reflected_predict(target: str) -> Any:
    """The typed Predict method as a reflection client sees it through ``target``."""
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {TYPED, "inference.GRPCInferenceService"} <= set(database.get_services())
        pool = DescriptorPool(database)
        assert pool.FindServiceByName("inference.GRPCInferenceService").FindMethodByName(
            "ModelInfer").input_type.full_name == "inference.ModelInferRequest"
        return pool.FindServiceByName(TYPED).FindMethodByName("Predict")


def test_reflection_describes_the_typed_service_its_model_serves(gateway: Process) -> None:
    predict = _reflected_predict(gateway.tcp)
    assert predict.input_type.full_name == "pyml.echo.v1.PredictRequest"
    assert [f.name for f in predict.input_type.fields] == ["x", "delay_ms"]
    assert predict.output_type.fields_by_name["y"].message_type.full_name == \
        "pyml.echo.v1.DoubleColumn"


def test_an_unknown_symbol_is_not_found_through_reflection(gateway: Process) -> None:
    with grpc.insecure_channel(gateway.tcp) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
                for symbol in ("pyml.echo.v1.NoSuchMessage", "no.such.Service")]
        asks.append(reflection_pb2.ServerReflectionRequest(file_by_filename="no/such.proto"))
        replies = list(stub.ServerReflectionInfo(iter(asks), timeout=10))
    assert [r.error_response.error_code for r in replies] == \
        [grpc.StatusCode.NOT_FOUND.value[0]] * 3


def test_a_clean_stop_removes_the_socket(echo: dict[str, Any], tmp_path: Path) -> None:
    socket = tmp_path / "gateway.sock"
    running = _gateway({"echo@1.1.0": echo["servers"]["1.1.0"].unix}, "--socket", str(socket))
    assert socket.is_socket()
    assert running.stop() == 0, running.text()
    assert not socket.exists(), "the socket outlived a clean shutdown"


def test_readiness_follows_the_model_servers(echo: dict[str, Any]) -> None:
    socket = echo["root"] / "late.sock"
    running = _gateway({"echo@1.0.0": f"unix:{socket}"})
    try:
        assert _health(running.tcp) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert _health(running.tcp, "pymlc.gateway") == health_pb2.HealthCheckResponse.SERVING
        client = triton.InferenceServerClient(running.tcp)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("echo", _inputs([1.0]))
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        message = caught.value.message() or ""
        assert "echo/1.0.0" in message and str(socket) not in message, message
        folder = echo["root"] / "1.0.0"
        late = model_server(echo["generated"]["1.0.0"], folder, socket)
        try:
            _wait_serving(running.tcp)
            np.testing.assert_array_equal(client.infer("echo", _inputs([1.0])).as_numpy("y"),
                                          [2.0])
        finally:
            late.stop()
    finally:
        assert running.stop() == 0, running.text()


def test_sigterm_lets_in_flight_calls_finish(echo: dict[str, Any]) -> None:
    running = _gateway({"echo@1.1.0": echo["servers"]["1.1.0"].unix}, "--grace", "10")
    code, results = _stop_during_a_slow_call(running.tcp, echo["servers"]["1.1.0"], running.stop)
    assert code == 0, running.text()
    assert len(results) == 1, "the gateway exited before the call finished"
    np.testing.assert_array_equal(results[0], [6.0])
    assert "finishing in-flight calls" in running.text()


# --- the pieces, in-process -------------------------------------------------------------------

def test_peek_reads_only_the_name_and_version() -> None:
    request = oip.ModelInferRequest(model_name="fare-estimator", model_version="1.4.0", id="x")
    request.inputs.add(name="a", datatype="FP64", shape=[2])
    request.raw_input_contents.append(b"\x00" * 16)
    assert peek_model(request.SerializeToString()) == ("fare-estimator", "1.4.0")
    assert peek_model(oip.ModelReadyRequest(name="digit-net").SerializeToString()) == \
        ("digit-net", "")
    assert peek_model(b"") == ("", "")
    # Fields out of order, and a repeated name (the last one wins, as in protobuf parsers).
    tail = oip.ModelInferRequest(model_version="2").SerializeToString()
    twice = oip.ModelInferRequest(model_name="b").SerializeToString()
    assert peek_model(tail + oip.ModelInferRequest(model_name="a").SerializeToString() + twice) \
        == ("b", "2")
    for broken in (b"\x0a\x05ab", b"\x0b", b"\x80"):
        with pytest.raises(ValueError):
            peek_model(broken)


def test_versions_sort_as_semantic_versions() -> None:
    versions = ["1.10.0", "1.2.0", "1.2.0-rc.1", "1.2.0-rc.10", "1.2.0-rc.2", "0.9.9"]
    assert sorted(versions, key=version_key) == [
        "0.9.9", "1.2.0-rc.1", "1.2.0-rc.2", "1.2.0-rc.10", "1.2.0", "1.10.0"]


# --- HAProxy in front (the data path of `pymlc gateway`), with the same model servers ---------

@pytest.fixture(scope="module")
def fronted(echo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    front = Front(echo, tmp_path_factory.mktemp("hap"))
    yield front
    front.close()


class Front:
    """HAProxy (generated config, runtime API) in front of a Python gateway, both serving the
    echo versions; ``model_sockets`` may point HAProxy elsewhere than the Python gateway;
    ``cpus``: each model container's CPUs, as the routes file gives them."""

    def __init__(self, echo: dict[str, Any], folder: Path, *,
                 model_sockets: dict[str, str] | None = None, grace: float = 10,
                 cpus: float = 1.0) -> None:
        found = find_haproxy()
        if not isinstance(found, HAProxyBinary):
            pytest.fail(f"these tests need HAProxy: {found} (scripts/test installs it)",
                        pytrace=False)
        self.routes = [Route("echo", v, s.unix, TYPED if v == "1.1.0" else "")
                       for v, s in echo["servers"].items()]
        internal = folder / "gateway.sock"
        self.python = _gateway({f"echo@{r.version}": r.target for r in self.routes},
                               "--socket", str(internal), "--service", f"{TYPED}=echo@1.1.0")
        _wait_serving(self.python.tcp)
        sockets = {r.key: r.target.removeprefix("unix:") for r in self.routes}
        sockets.update(model_sockets or {})
        self.proxy = HAProxy(found, self.routes,
                             {key: ModelServer(path, cpus) for key, path in sockets.items()},
                             folder=folder,
                             gateway_socket=internal, socket=str(folder / "front.sock"),
                             port=0, host="127.0.0.1", grace=grace, source="routes.json")
        try:
            self.unix, self.tcp = self.proxy.start()
        except BaseException:
            self.close()
            raise
        for route in self.routes:
            self.proxy.enable(route)

    def served(self, proxy: str, server: str = "BACKEND") -> int:
        return served(self.proxy.admin, proxy, server)

    def counts(self) -> dict[str, int]:
        return {"1.0.0": self.served("echo:1.0.0", "model"),
                "1.1.0": self.served("echo:1.1.0", "model"),
                "python": self.served("python") + self.served("echo:1.0.0", "python")
                + self.served("echo:1.1.0", "python")}

    def close(self) -> None:
        self.proxy.stop(5)
        assert self.python.stop() == 0, self.python.text()


def _raw_infer(target: str, request: bytes) -> Any:
    with grpc.insecure_channel(target) as channel:
        reply = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(request,
                                                                                  timeout=30)
    return oip.ModelInferResponse.FromString(reply)


def _echo_request(x: list[float], **fields: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(**fields)
    for name, datatype, values in (("x", "FP64", np.asarray(x, np.float64)),
                                   ("delay_ms", "INT32", np.zeros(len(x), np.int32))):
        request.inputs.add(name=name, datatype=datatype, shape=[len(x)])
        request.raw_input_contents.append(values.tobytes())
    return request


def test_haproxy_sends_named_and_latest_versions_straight_to_the_models(fronted: Front,
                                                                       echo: dict[str, Any]
                                                                       ) -> None:
    before = fronted.counts()
    for target in (fronted.unix, fronted.tcp):
        client = triton.InferenceServerClient(target)
        latest = client.infer("echo", _inputs([1.0, 2.5]))
        assert latest.get_response().model_version == "1.1.0"
        np.testing.assert_array_equal(latest.as_numpy("y"), [3.0, 7.5])
        older = client.infer("echo", _inputs([1.0, 2.5]), model_version="1.0.0")
        np.testing.assert_array_equal(older.as_numpy("y"), [2.0, 5.0])
        assert client.is_model_ready("echo", "1.0.0")
        assert client.get_model_metadata("echo").versions == ["1.1.0"]
    pb2, pb2_grpc = stubs(echo["generated"]["1.1.0"], "echo_v1")
    request = pb2.PredictRequest(x={"values": [1.0, 4.0]}, delay_ms={"values": [0, 0]})
    with grpc.insecure_channel(fronted.unix) as channel:
        assert list(pb2_grpc.EchoStub(channel).Predict(request, timeout=10).y.values) == \
            [3.0, 12.0]
    after = fronted.counts()
    assert (after["1.0.0"] - before["1.0.0"], after["1.1.0"] - before["1.1.0"]) == (2, 3)
    # ModelReady and ModelMetadata (twice each) take the Python path, which checks them
    assert after["python"] - before["python"] == 4
    usage = fronted.proxy.usage()["echo/1.1.0"]  # what the launcher's idle check reads
    assert usage.in_flight == 0 and usage.idle is not None and usage.idle < 2


def test_what_haproxy_cannot_tell_goes_to_the_python_gateway(fronted: Front) -> None:
    before = fronted.served("python")
    # The request id first, then the name and version: valid protobuf, not the usual order.
    request = _echo_request([1.0, 2.0], model_name="echo", model_version="1.0.0")
    unusual = oip.ModelInferRequest(id="r-1").SerializeToString() + \
        request.SerializeToString()
    assert unusual[0] == 0x1A  # field 3 (id) comes first
    reply = _raw_infer(fronted.unix, unusual)
    assert (reply.model_version, reply.id) == ("1.0.0", "r-1")
    np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[0]), [2.0, 4.0])
    # An explicitly empty version (0x12 0x00) is "latest" too.
    explicit = _echo_request([1.0], model_name="echo").SerializeToString()
    explicit = explicit[:6] + b"\x12\x00" + explicit[6:]
    assert _raw_infer(fronted.unix, explicit).model_version == "1.1.0"
    client = triton.InferenceServerClient(fronted.tcp)
    # gzip-compressed: refused before it is inflated (a gzip bomb would inflate 1000-fold)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("echo", _inputs([2.0] * 1000), compression_algorithm="gzip")
    assert caught.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "'gzip' is disabled" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", _inputs([1.0]))
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "echo/1.0.0, echo/1.1.0" in caught.value.message()
    assert client.get_server_metadata().name == "pymlc-gateway"
    assert _health(fronted.tcp) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(fronted.tcp) as channel:  # a streaming call passes too
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    assert "inference.GRPCInferenceService" in {
        s.name for s in reply.list_services_response.service}
    assert _reflected_predict(fronted.tcp).input_type.full_name == "pyml.echo.v1.PredictRequest"
    assert fronted.served("python") - before >= 8


def test_only_requests_haproxy_holds_whole_take_the_fast_path(fronted: Front) -> None:
    # 1000 rows (12 kB) fit HAProxy's 16 kB buffer; 300,000 rows (3.6 MB) do not, and go
    # through the Python gateway, which holds a whole message before it passes it on.
    for rows, fast in ((1000, 1), (300_000, 0)):
        before = fronted.served("echo:1.1.0", "model"), fronted.served("python")
        x = np.arange(rows, dtype=np.float64)
        result = triton.InferenceServerClient(fronted.unix).infer("echo", _inputs(list(x)))
        np.testing.assert_array_equal(result.as_numpy("y"), x * 3.0)
        after = fronted.served("echo:1.1.0", "model"), fronted.served("python")
        assert (after[0] - before[0], after[1] - before[1]) == (fast, 1 - fast)


def test_a_disabled_model_server_leaves_its_calls_to_the_python_gateway(fronted: Front
                                                                       ) -> None:
    [route] = [r for r in fronted.routes if r.version == "1.0.0"]
    before = fronted.served("echo:1.0.0", "python")
    fronted.proxy.disable(route)
    try:
        result = triton.InferenceServerClient(fronted.tcp).infer(
            "echo", _inputs([1.0]), model_version="1.0.0")
        np.testing.assert_array_equal(result.as_numpy("y"), [2.0])
    finally:
        fronted.proxy.enable(route)
    assert fronted.served("echo:1.0.0", "python") == before + 1
    usage = fronted.proxy.usage()
    assert usage["echo/1.0.0"].in_flight == 0 and usage["echo/1.0.0"].idle is not None


def _calls_at_once(target: str, count: int, delay_ms: int
                   ) -> tuple[dict[int, Any], Callable[[], None]]:
    """Start ``count`` latest-version echo calls (y = 3x) of ``delay_ms`` each, in threads.

    Returns:
        Each call's output (or status code, if it failed), filled in as they end, and a
        function that waits for all of them.
    """
    outcomes: dict[int, Any] = {}

    def call(i: int) -> None:
        client = triton.InferenceServerClient(target)
        try:
            outcomes[i] = list(client.infer("echo", _inputs([float(i)], delay_ms=delay_ms),
                                            client_timeout=WAIT_S).as_numpy("y"))
        except InferenceServerException as exc:
            outcomes[i] = exc.status()

    callers = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for caller in callers:
        caller.start()

    def join() -> None:
        for caller in callers:
            caller.join(WAIT_S)

    return outcomes, join


@pytest.mark.parametrize(("cpus", "at_once"), [(1.0, 1), (2.5, 3)])
def test_haproxy_hands_a_model_one_call_per_cpu_and_queues_the_rest(
        echo: dict[str, Any], tmp_path: Path, cpus: float, at_once: int) -> None:
    front = Front(echo, tmp_path, cpus=cpus)
    try:
        # Long calls, so that all five are held before the first one ends.
        outcomes, join = _calls_at_once(front.tcp, 5, delay_ms=2000)
        in_flight = _poll(lambda: front.proxy.usage()["echo/1.1.0"].in_flight, 5)
        join()
        server = haproxy_stats(front.proxy.admin)[("echo:1.1.0", "model")]
        assert in_flight == 5, "queued calls must count as traffic"
        assert outcomes == {i: [3.0 * i] for i in range(5)}
        assert (int(server["smax"]), int(server["qmax"])) == (at_once, 5 - at_once)
        assert int(server["stot"]) == 5 and front.counts()["python"] == 0
    finally:
        front.close()


@pytest.mark.parametrize("gone", ["killed", "disabled"])
def test_calls_queued_for_a_server_that_goes_away_are_answered_through_python(
        echo: dict[str, Any], tmp_path: Path, gone: str) -> None:
    doomed = model_server(echo["generated"]["1.1.0"], echo["root"] / "1.1.0",
                          tmp_path / "doomed.sock")
    front = Front(echo, tmp_path, model_sockets={"echo/1.1.0": str(tmp_path / "doomed.sock")})
    try:
        outcomes, join = _calls_at_once(front.tcp, 4, delay_ms=2500)
        # One call runs on the doomed server, three wait in HAProxy's queue.
        assert _poll(lambda: front.proxy.usage()["echo/1.1.0"].in_flight, 4) == 4
        if gone == "killed":  # the call it was running is retried on the Python gateway too
            doomed.process.kill()
        else:  # what the launcher does before it stops a container
            front.proxy.disable(next(r for r in front.routes if r.version == "1.1.0"))
        join()  # HAProxy's queue timeout is 24 h: a call left there ends at its deadline
        assert outcomes == {i: [3.0 * i] for i in range(4)}
        assert front.served("echo:1.1.0", "python") >= 3
    finally:
        doomed.stop()
        front.close()


def test_a_refused_connection_is_retried_on_the_python_gateway(echo: dict[str, Any],
                                                               tmp_path: Path) -> None:
    # A dead container leaves its socket file behind, with nobody listening on it.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "dead.sock"))
    dead.close()
    front = Front(echo, tmp_path, model_sockets={"echo/1.0.0": str(tmp_path / "dead.sock")})
    try:
        result = triton.InferenceServerClient(front.tcp).infer(
            "echo", _inputs([1.0]), model_version="1.0.0")
        np.testing.assert_array_equal(result.as_numpy("y"), [2.0])
        assert front.served("echo:1.0.0", "python") == 1
        stats = haproxy_stats(front.proxy.admin)[("echo:1.0.0", "model")]
        assert stats["status"].startswith("DOWN"), stats["status"]
        # Sent on at once: a retry on the same server (wretr) would first wait HAProxy's
        # turn-around delay.
        assert (stats["wretr"], stats["wredis"]) == ("0", "1"), stats
    finally:
        front.close()


def test_a_soft_stop_lets_calls_in_flight_through_haproxy_finish(echo: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    front = Front(echo, tmp_path, grace=10)
    _, results = _stop_during_a_slow_call(front.tcp, echo["servers"]["1.1.0"], front.close)
    assert len(results) == 1, "HAProxy exited before the call finished"
    np.testing.assert_array_equal(results[0], [6.0])
