"""A test model that raises, breaks its contract, sleeps and uses nullable dates/ints/strings,
served by a real process: INTERNAL without dying, drain on SIGTERM, stale sockets, the health
entry point and too-large messages."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from serving_support import (
    IN_PREDICT,
    PYTHON,
    ROOT,
    Server,
    build,
    model_env,
    stubs,
    write_probe,
)

from pymlc.runtime_stub import health

pytestmark = pytest.mark.slow  # servers per test, deliberately slow calls, signals


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_probe(tmp_path_factory.mktemp("probe") / "spec")


@pytest.fixture(scope="module")
def generated(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(spec, tmp_path_factory.mktemp("probe-generated"))


@pytest.fixture(scope="module")
def pb(generated: Path) -> tuple[Any, Any]:
    return stubs(generated, "probe_v0")


@pytest.fixture(scope="module")
def server(spec: Path, generated: Path) -> Iterator[Server]:
    running = Server(generated, spec, "--socket", str(spec.parent / "probe.sock"))
    yield running
    assert running.stop() == 0, running.text()


def _request(pb2: Any, xs: list[float], delay_ms: int = 0) -> Any:
    request = pb2.PredictRequest(x={"values": xs}, delay_ms={"values": [delay_ms] * len(xs)})
    request.day.values.extend([19_000 + i for i in range(len(xs))])
    request.day.nulls.extend([i == 1 for i in range(len(xs))])
    request.label.values.extend(["ab" * i for i in range(len(xs))])
    request.label.nulls.extend([i == 2 for i in range(len(xs))])
    return request


def _call(server: Server, pb: tuple[Any, Any], request: Any, timeout: float = 30) -> Any:
    with grpc.insecure_channel(server.unix) as channel:
        return pb[1].ProbeStub(channel).Predict(request, timeout=timeout)


def test_nullable_dates_ints_and_strings_round_trip(server: Server, pb: tuple[Any, Any]) -> None:
    reply = _call(server, pb, _request(pb[0], [1.0, 2.0, 3.0, 4.0]))
    assert list(reply.y.values) == [2.0, 4.0, 6.0, 8.0]
    assert list(reply.day_out.nulls) == [False, True, False, False]
    assert [v for v, null in zip(reply.day_out.values, reply.day_out.nulls, strict=True)
            if not null] == [19_000, 19_002, 19_003]
    assert list(reply.label_length.nulls) == [False, False, True, False]
    assert list(reply.label_length.values)[:2] + list(reply.label_length.values)[3:] == [0, 2, 6]


def test_an_exception_in_predict_is_internal_and_the_server_lives_on(
        server: Server, pb: tuple[Any, Any]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, pb, _request(pb[0], [1.0, -1.0]))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "ValueError: x must not be negative"
    assert list(_call(server, pb, _request(pb[0], [5.0])).y.values) == [10.0]
    deadline = time.monotonic() + 60  # generous: the machine may be loaded
    while "Traceback" not in server.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Traceback" in server.text() and "x must not be negative" in server.text()


def test_outputs_that_break_the_spec_are_internal(server: Server, pb: tuple[Any, Any]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, pb, _request(pb[0], [13.0]))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    details = caught.value.details()
    assert details.startswith("OutputError:")
    assert "unlucky: unexpected output column" in details and "y: missing output" in details


def test_message_over_the_limit_is_resource_exhausted(server: Server, pb: tuple[Any, Any]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _call(server, pb, _request(pb[0], list(np.arange(20_000.0))))  # > 64 KiB
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_entry_point(server: Server, spec: Path, generated: Path) -> None:
    env = model_env(generated, spec)
    ok = subprocess.run([PYTHON, "-m", "pymlc.runtime_stub.health", "--target", server.unix],
                        env=env, capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    gone = subprocess.run([PYTHON, "-m", "pymlc.runtime_stub.health", "--target",
                           f"unix:{spec.parent}/nobody.sock", "--timeout", "1"],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    assert gone.returncode == 1


def test_sigterm_drains_in_flight_requests(spec: Path, generated: Path,
                                           pb: tuple[Any, Any]) -> None:
    sock = spec.parent / "drain.sock"
    running = Server(generated, spec, "--socket", str(sock), "--grace", "20")
    results: list[Any] = []
    errors: list[str] = []

    def slow_call() -> None:
        try:
            results.append(_call(running, pb, _request(pb[0], [1.0], delay_ms=1500)))
        except grpc.RpcError as exc:
            errors.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=slow_call) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while running.text().count(IN_PREDICT) < 4:  # all four are inside predict
        assert time.monotonic() < deadline, running.text()
        time.sleep(0.05)
    assert running.stop() == 0, running.text()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 4
    assert all(list(r.y.values) == [2.0] for r in results)
    assert not sock.exists()


def test_a_stale_socket_file_is_replaced(spec: Path, generated: Path,
                                         pb: tuple[Any, Any]) -> None:
    sock = spec.parent / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on, as a killed server leaves it
    stale.close()
    running = Server(generated, spec, "--socket", str(sock))
    try:
        assert list(_call(running, pb, _request(pb[0], [2.0])).y.values) == [4.0]
        assert os.stat(sock).st_mode & 0o777 == 0o660
    finally:
        assert running.stop() == 0


def test_a_live_socket_is_not_stolen(server: Server, spec: Path, generated: Path) -> None:
    second = subprocess.run([PYTHON, "-m", "pymlc.runtime_stub.serve", "--socket",
                             server.unix.removeprefix("unix:")], env=model_env(generated, spec),
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert second.returncode == 1
    assert "another server is listening" in second.stderr


def test_missing_environment_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYML_")}
    run = subprocess.run([PYTHON, "-m", "pymlc.runtime_stub.serve"], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and "PYML_MODEL_CONFIG is not set" in run.stderr


def test_model_calls_beyond_max_concurrency_are_resource_exhausted(
        tmp_path: Path, pb: tuple[Any, Any]) -> None:
    folder = write_probe(tmp_path / "spec")
    spec = folder / "pyml.yaml"
    spec.write_text(spec.read_text().replace("  threads: 4\n",
                                             "  threads: 2\n  max_concurrency: 2\n"))
    running = Server(build(folder, tmp_path / "generated"), folder, "--socket",
                     str(tmp_path / "limit.sock"))
    outcomes: list[str] = []

    def slow_call() -> None:  # 3 s each: all six arrive while the first two still run
        try:
            reply = _call(running, pb, _request(pb[0], [1.0], delay_ms=3000))
            outcomes.append(f"OK {list(reply.y.values)}")
        except grpc.RpcError as exc:
            outcomes.append(f"{exc.code().name}: {exc.details()}")

    calls = [threading.Thread(target=slow_call) for _ in range(6)]
    try:
        for t in calls:
            t.start()
        assert health.check(running.unix)  # health is no model call: never refused
        for t in calls:
            t.join()
        refused = "RESOURCE_EXHAUSTED: 2 calls are in progress, the most this server takes" \
                  " (serving.max_concurrency); retry later"
        assert sorted(outcomes) == ["OK [2.0]"] * 2 + [refused] * 4
    finally:
        assert running.stop() == 0, running.text()
