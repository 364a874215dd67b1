"""Hostile traffic through the gateway, in both its shapes:

- the pod form (``python -m pymlc.runtime_stub.gateway`` in front of a real model server, as
  kubernetes.yaml runs it with a 256 Mi memory limit);
- ``pymlc gateway`` with HAProxy in front (the model in its container, Docker engine).

Gzip bombs (1 MiB on the wire -> 1 GiB, 4 MiB -> 4 GiB) are refused before they inflate and
leave the gateway's peak memory (``VmHWM``) where it was; streams that open ``ModelInfer`` and
never send (or send half a message) hold nothing that health checks and normal calls need: both
are answered within a second with 128 of them open; garbage and truncated messages get
INVALID_ARGUMENT or NOT_FOUND and never crash the gateway; a 100,000-character model name is
not echoed whole.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.service_pb2 as oip
from gateway_support import (
    FARE_EXPECTED,
    FARE_ROWS,
    GATEWAY_READY,
    PymlcGateway,
    build_serving_image,
    fare_copy,
    fare_inputs,
    processes,
    pymlc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raw_grpc import Connection, call, frame, gzip_zeros
from servers import PYTHON, Process, Server, peak_rss
from tritonclient.utils import InferenceServerException

MODEL = "gw-hostile"
INFER = "/inference.GRPCInferenceService/ModelInfer"
MiB = 1 << 20
POD_LIMIT = 256 * MiB  # the gateway container's memory limit in kubernetes.yaml
PROMISE = 1.0  # seconds: health and a normal call, whatever the stalled streams do
STALLED = 64  # of each kind: headers only, and half a message
PER_CONNECTION = 16
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]


def _request(name: str = MODEL, rows: int = 1) -> bytes:
    """A well-formed ModelInfer request for the fare copy (``rows`` copies of the examples)."""
    message = oip.ModelInferRequest(model_name=name)
    for tensor in fare_inputs(FARE_ROWS * rows):
        message.inputs.append(tensor._get_tensor())
        message.raw_input_contents.append(tensor._get_content())
    return bytes(message.SerializeToString())


# --- the two gateways --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fare_copy(tmp_path_factory.mktemp("hostile") / MODEL, MODEL)


@pytest.fixture(scope="module")
def pod(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """The pod form: the model server on a socket, the routing gateway in front of it."""
    root = tmp_path_factory.mktemp("pod")
    generated = root / "generated"
    done = pymlc("build", spec, "-o", generated)
    assert done.returncode == 0, done.stderr
    proto = json.loads((generated / "model.json").read_text())["proto"]
    model = Server(generated, spec.parent, "--socket", str(root / "model.sock"))
    gateway = Process([PYTHON, "-m", "pymlc.runtime_stub.gateway", "--port", "0",
                       "--route", f"{MODEL}@1.4.0=unix:{root / 'model.sock'}",
                       "--service", f"{proto['package']}.{proto['service']}={MODEL}"],
                      GATEWAY_READY)
    try:
        _wait_ready(gateway.tcp)
        yield gateway
    finally:
        assert gateway.stop() == 0, gateway.text()
        model.stop()


@pytest.fixture(scope="module")
def fronted(engine: Any, spec: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[PymlcGateway]:
    """``pymlc gateway`` (HAProxy in front) with the model's container running."""
    out = tmp_path_factory.mktemp("fronted")
    tags = build_serving_image(engine, spec)
    try:
        done = pymlc("build", spec.parent, "-o", out)
        assert done.returncode == 0, done.stderr
        gateway = PymlcGateway(engine, out / "routes.json")
        try:
            assert gateway.data_path == "haproxy", gateway.text()
            _infer(gateway.tcp)  # the container runs: routed calls take the fast path
            yield gateway
        finally:
            assert gateway.close() == 0, gateway.text()
    finally:
        for tag in tags:
            engine.images.remove(tag, force=True)


@pytest.fixture(params=["pod", pytest.param("haproxy", marks=pytest.mark.docker)])
def any_gateway(request: pytest.FixtureRequest) -> tuple[str, int]:
    """A gateway's TCP target and the pid whose memory counts (the Python gateway's)."""
    gateway: Process = request.getfixturevalue("pod" if request.param == "pod" else "fronted")
    return gateway.tcp, gateway.process.pid


def _wait_ready(target: str, timeout: float = 60) -> None:
    until = time.monotonic() + timeout
    while _health(target, timeout=5) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < until, f"{target} never became ready"
        time.sleep(0.1)


def _health(target: str, *, timeout: float) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=timeout)
    return int(reply.status)


def _infer(target: str, *, timeout: float = 120) -> None:
    result = triton.InferenceServerClient(target).infer(MODEL, fare_inputs(FARE_ROWS),
                                                        client_timeout=timeout)
    np.testing.assert_allclose(result.as_numpy("fare"), FARE_EXPECTED, rtol=1e-6)


# --- gzip bombs ----------------------------------------------------------------------------

def test_the_bomb_is_what_it_claims() -> None:
    bomb = gzip_zeros(64 * MiB)
    assert len(bomb) < 80_000
    assert zlib.decompress(bomb, 31) == bytes(64 * MiB)


def test_a_compressed_call_is_refused_in_plain_words(any_gateway: tuple[str, int]) -> None:
    target, _ = any_gateway
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(target).infer(MODEL, fare_inputs(FARE_ROWS * 100),
                                                   compression_algorithm="gzip")
    assert caught.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "'gzip' is disabled" in (caught.value.message() or "")


@pytest.mark.parametrize("inflated", [1 << 30, 4 << 30], ids=["1GiB", "4GiB"])
def test_a_gzip_bomb_leaves_the_gateways_memory_where_it_was(any_gateway: tuple[str, int],
                                                              inflated: int) -> None:
    target, pid = any_gateway
    _infer(target)
    idle = peak_rss(pid)
    bomb = gzip_zeros(inflated)
    reply = call(target, INFER, frame(bomb, compressed=True), encoding="gzip", timeout=120)
    peak = peak_rss(pid)
    print(f"{inflated >> 30} GiB bomb ({len(bomb) / MiB:.1f} MiB on the wire) through"
          f" {target}: status {reply.status}; gateway peak RSS {idle / MiB:.0f} MiB before,"
          f" {peak / MiB:.0f} MiB after")
    assert reply.status == UNIMPLEMENTED, reply
    assert peak < POD_LIMIT, f"peak RSS {peak / MiB:.0f} MiB"
    assert peak - idle < 32 * MiB, f"peak RSS grew by {(peak - idle) / MiB:.0f} MiB"
    _infer(target)


# --- stalled streams -------------------------------------------------------------------------

@pytest.fixture
def stalled(any_gateway: tuple[str, int]) -> Iterator[list[Connection]]:
    """``STALLED`` ModelInfer streams that send headers only, and as many that send half a
    message (a small one, and one larger than HAProxy's buffer) and stop."""
    target, _ = any_gateway
    halves = [frame(_request())[:40], frame(_request(rows=1000))[:30_000]]
    connections = []
    for half in (None, *halves):
        count = STALLED if half is None else STALLED // 2
        for _ in range(count // PER_CONNECTION):
            connection = Connection(target)
            for _ in range(PER_CONNECTION):
                stream = connection.open(INFER)
                if half is not None:
                    connection.send(stream, half, end=False)
            connection.ping()
            connections.append(connection)
    yield connections
    for connection in connections:
        connection.close()


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_stalled_streams_hold_nothing_health_and_calls_need(any_gateway: tuple[str, int],
                                                             stalled: list[Connection]) -> None:
    target, pid = any_gateway
    timings: dict[str, list[float]] = {"health": [], "call": []}
    for _ in range(5):  # one slow answer on a loaded machine is not the point
        timings["health"].append(_timed(lambda: _health(target, timeout=10)))
        timings["call"].append(_timed(lambda: _infer(target, timeout=10)))
    shown = {name: f"{min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms" for name, t in timings.items()}
    print(f"{target}: with {2 * STALLED} stalled ModelInfer streams: {shown};"
          f" gateway peak RSS {peak_rss(pid) / MiB:.0f} MiB")
    for name, seconds in timings.items():
        assert min(seconds) <= PROMISE, f"{name}: {seconds}"
    assert not any(connection.closed for connection in stalled)


# --- bad bytes ---------------------------------------------------------------------------------

def _garbage(seed: int = 20) -> list[bytes]:
    """Random bytes, and every cut of a well-formed request short of its end."""
    rng = random.Random(seed)
    noise = [rng.randbytes(rng.randrange(1, 300)) for _ in range(150)]
    whole = _request()
    return noise + [whole[:cut] for cut in range(1, len(whole), 7)]


def _parses(message: bytes, kind: Any) -> bool:
    try:
        kind.FromString(message)
    except Exception:  # protobuf's DecodeError, or a bad UTF-8 string
        return False
    return True


@pytest.mark.parametrize(("method", "kind"), [
    ("ModelInfer", oip.ModelInferRequest), ("ModelReady", oip.ModelReadyRequest),
    ("ModelMetadata", oip.ModelMetadataRequest)])
def test_garbage_and_truncated_messages_are_refused_and_the_gateway_keeps_serving(
        any_gateway: tuple[str, int], method: str, kind: Any) -> None:
    target, _ = any_gateway
    codes: dict[str, int] = {}
    with grpc.insecure_channel(target) as channel:
        send = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        for message in _garbage():
            try:
                send(message, timeout=30)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            codes[code] = codes.get(code, 0) + 1
            # A message that is a valid request of its kind may be answered (a ModelReady
            # naming no model asks about the gateway's only one); anything else may not.
            allowed = {"INVALID_ARGUMENT", "NOT_FOUND"} | ({"OK"} if _parses(message, kind)
                                                           else set())
            assert code in allowed, (code, message[:40])
    print(f"{target}: {sum(codes.values())} bad {method} messages: {codes}")
    assert _health(target, timeout=10) == health_pb2.HealthCheckResponse.SERVING
    _infer(target)


def test_a_huge_model_name_is_not_echoed_whole(any_gateway: tuple[str, int]) -> None:
    target, _ = any_gateway
    client = triton.InferenceServerClient(target)
    for ask in (lambda: client.infer("m" * 100_000, fare_inputs(FARE_ROWS)),
                lambda: client.is_model_ready(MODEL, "9" * 100_000)):
        with pytest.raises(InferenceServerException) as caught:
            ask()
        message = caught.value.message() or ""
        assert caught.value.status() == "StatusCode.NOT_FOUND", message[:300]
        assert "(100000 characters)" in message and len(message) < 500, message[:600]


@pytest.mark.docker
def test_no_haproxy_process_grew_under_the_attacks(fronted: PymlcGateway) -> None:
    [haproxy] = processes("haproxy", str(fronted.state))
    print(f"HAProxy peak RSS {peak_rss(haproxy) / MiB:.0f} MiB")
    assert peak_rss(haproxy) < 128 * MiB
