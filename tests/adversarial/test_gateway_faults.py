"""``pymlc gateway`` when its containers and itself fail, with the real Docker engine.

- 8 clients call for ~12 s while the model's container is killed twice: not one call fails,
  on the HAProxy data path and on the Python one (a refused or broken call is retried once on a
  fresh container);
- a container that crashes at start is not started again for every request: 10 calls one after
  the other, then 20 at once, start it a few times, not 30, and every answer is UNAVAILABLE
  with the end of its log;
- a gateway killed with SIGKILL leaves its container running; the next gateway removes it (and
  the dead one's state folder) before it serves.

The model is a copy of fare-estimator under a name and image of its own; the crashing one is
that image with its model config pointing nowhere. Every container is removed (by each
gateway's instance label), the images at the end of the module.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as triton
from gateway_support import (
    FARE_ROWS,
    PymlcGateway,
    build_serving_image,
    containers,
    fare_copy,
    fare_inputs,
    pymlc,
)
from tritonclient.utils import InferenceServerException

from pymlc.gateway import LABEL

pytestmark = pytest.mark.docker

MODEL = "gw-faults"
CRASHING = "gw-crash"
CRASH_LOG = "cannot read the model config /opt/pyml/no-such-model.json"
CALLERS = 8
LOAD_SECONDS = 12.0
# Seconds into the load at which the container is killed: two separate deaths, as in the report
# (a call is retried once; one caught by both deaths would be a third failure, not the second).
KILL_AT = (3.0, 7.5)
DEADLINE = 120.0  # per call: a restart takes a second or two; a loaded machine, more


@pytest.fixture(scope="module")
def routes(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A routes file with the fare copy and the crashing model; both images built here."""
    root = tmp_path_factory.mktemp("gw-faults")
    spec = fare_copy(root / "specs" / MODEL, MODEL)
    tags = build_serving_image(engine, spec)
    crashing = f"pymlc-test/{CRASHING}:1.4.0"
    dockerfile = f"FROM {tags[0]}\nENV PYML_MODEL_CONFIG=/opt/pyml/no-such-model.json\n"
    engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=crashing, rm=True,
                        network_mode="host")
    try:
        done = pymlc("build", root / "specs", "-o", root / "out")
        assert done.returncode == 0, done.stderr
        data = json.loads((root / "out" / "routes.json").read_text())
        [fare] = data["models"]
        data["models"].append({**fare, "name": CRASHING, "image": crashing, "service": ""})
        (root / "routes.json").write_text(json.dumps(data))
        yield root / "routes.json"
    finally:
        for tag in (crashing, *tags):
            engine.images.remove(tag, force=True)


@pytest.fixture
def gateways(engine: Any, routes: Path) -> Iterator[list[PymlcGateway]]:
    """Gateways a test starts (``gateways.append``); closed, their containers removed."""
    started: list[PymlcGateway] = []
    yield started
    for gateway in started:
        gateway.close()


class Load:
    """``CALLERS`` threads calling the model until stopped; counts calls and keeps failures."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.ok = 0
        self.failures: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call) for _ in range(CALLERS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)

    def _call(self) -> None:
        client = triton.InferenceServerClient(self.target)
        inputs = fare_inputs(FARE_ROWS)
        while not self._stop.is_set():
            try:
                client.infer(MODEL, inputs, client_timeout=DEADLINE)
                with self._lock:
                    self.ok += 1
            except InferenceServerException as exc:
                with self._lock:
                    self.failures.append((str(exc.status()), exc.message() or ""))
        client.close()

    def wait_for(self, calls: int, timeout: float = 120.0) -> None:
        """Wait until ``calls`` more calls have succeeded."""
        goal = self.ok + calls
        until = time.monotonic() + timeout
        while self.ok < goal and not self.failures:
            assert time.monotonic() < until, f"only {self.ok} calls in {timeout} s"
            time.sleep(0.05)


def _wait(condition: Any, timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("data_path", ["haproxy", "python"])
def test_no_call_fails_while_the_container_is_killed_under_load(
        engine: Any, routes: Path, gateways: list[PymlcGateway], data_path: str) -> None:
    gateway = PymlcGateway(engine, routes, "--data-path", data_path)
    gateways.append(gateway)
    triton.InferenceServerClient(gateway.tcp).infer(MODEL, fare_inputs(FARE_ROWS))
    started = time.monotonic()
    killed = []
    with Load(gateway.tcp) as load:
        for kill_at in KILL_AT:
            load.wait_for(50)
            time.sleep(max(0.0, kill_at - (time.monotonic() - started)))
            [container] = gateway.running(MODEL)
            container.kill()
            killed.append(container.id)
            _wait(lambda: [c.id for c in gateway.running(MODEL)] not in ([], killed[-1:]),
                  DEADLINE, "a fresh container")
            load.wait_for(50)
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - started)))
    calls = load.ok + len(load.failures)
    print(f"{data_path}: {calls} calls by {CALLERS} clients in"
          f" {time.monotonic() - started:.1f} s, container killed twice:"
          f" {len(load.failures)} failed")
    if load.failures:
        print(gateway.text())
    assert load.failures == [], load.failures[:5]
    assert not {c.id for c in gateway.containers()} & set(killed)


def _starts(engine: Any, instance: str, since: float) -> int:
    """How many containers of gateway ``instance`` the engine started since ``since``."""
    events = engine.events(since=int(since), until=int(time.time()) + 1, decode=True,
                           filters={"type": "container", "event": "start",
                                    "label": f"{LABEL}={instance}"})
    return sum(1 for _ in events)


def _fail(target: str) -> tuple[str, str]:
    client = triton.InferenceServerClient(target)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(CRASHING, fare_inputs(FARE_ROWS), client_timeout=DEADLINE)
    return str(caught.value.status()), caught.value.message() or ""


def test_a_container_that_crashes_at_start_is_started_again_only_after_a_backoff(
        engine: Any, routes: Path, gateways: list[PymlcGateway]) -> None:
    since = time.time() - 1
    gateway = PymlcGateway(engine, routes)
    gateways.append(gateway)
    answers = [_fail(gateway.tcp) for _ in range(10)]
    one_by_one = _starts(engine, gateway.instance, since)
    at_once: list[tuple[str, str]] = []
    callers = [threading.Thread(target=lambda: at_once.append(_fail(gateway.tcp)))
               for _ in range(20)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(DEADLINE)
    together = _starts(engine, gateway.instance, since) - one_by_one
    print(f"crash-looping container: {one_by_one} start(s) for 10 calls one by one,"
          f" {together} for 20 calls at once")
    assert len(at_once) == 20
    for status, message in answers + at_once:
        assert status == "StatusCode.UNAVAILABLE", message
        assert CRASH_LOG in message, message
    assert any("next try in" in message for _, message in answers + at_once)
    assert 1 <= one_by_one <= 3, "each call started the container again"
    assert together <= 3, "each concurrent call started the container again"
    assert containers(engine, gateway.instance) == []


def test_the_next_gateway_removes_what_a_killed_one_left_running(
        engine: Any, routes: Path, gateways: list[PymlcGateway]) -> None:
    first = PymlcGateway(engine, routes)
    gateways.append(first)
    triton.InferenceServerClient(first.tcp).infer(MODEL, fare_inputs(FARE_ROWS))
    [orphan] = first.running(MODEL)
    first.process.kill()
    first.process.wait(60)
    assert [c.id for c in first.running(MODEL)] == [orphan.id], "SIGKILL left it running"
    second = PymlcGateway(engine, routes)
    gateways.append(second)
    assert first.containers() == [], "the orphaned container is still there"
    assert not (first.state / first.instance).exists(), "the dead gateway's folder is left"
    assert any(f"gateway {first.instance}, whose process is gone" in line
               for line in second.log), second.text()
    result = triton.InferenceServerClient(second.tcp).infer(MODEL, fare_inputs(FARE_ROWS))
    assert result.as_numpy("fare") is not None
    assert [c.labels[LABEL] for c in second.running(MODEL)] == [second.instance]
