"""The launcher's death watch when the engine gives no event stream.

With a real engine, deaths arrive as ``die`` events (see test_gateway_docker). An engine that
refuses the event stream cannot be produced on demand, so a fake client stands in for it here:
the launcher must fall back to inspecting its containers, and still notice a dead one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker
import pytest

from pymlc.gateway import launcher as launcher_module
from pymlc.gateway.launcher import Launcher, ModelImage


class _Container:
    def __init__(self) -> None:
        self.id, self.short_id = "c0ffee" * 4, "c0ffee"
        self.status, self.attrs = "running", {"State": {"ExitCode": 137}}
        self.removed = False

    def reload(self) -> None:  # the engine says it died
        self.status = "exited"

    def stop(self, timeout: int = 0) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.removed = True


class _Containers:
    def list(self, **_: Any) -> list[Any]:
        return []


class _Client:
    def __init__(self) -> None:
        self.subscriptions = 0
        self.containers = _Containers()

    def events(self, **_: Any) -> Any:
        self.subscriptions += 1
        raise docker.errors.DockerException("event streams are switched off here")


def test_without_an_event_stream_deaths_are_found_by_inspection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher_module, "POLL_EVERY", 0.05)
    client = _Client()
    model = ModelImage("m", "1.0.0", "img:1", "/run/pyml/model.sock", "pkg.M", 1.0, 256,
                       1 << 20)
    launcher = Launcher(client, [model], instance="t", state_dir=tmp_path / "s")
    [slot] = launcher._slots.values()
    container = _Container()
    slot.container = container
    launcher.start()
    try:
        deadline = time.monotonic() + 60  # generous: the launcher polls every 5 s
        while not container.removed and time.monotonic() < deadline:
            time.sleep(0.02)
        assert container.removed, "the dead container was not noticed"
        assert slot.container is None and client.subscriptions >= 2  # kept trying the stream
    finally:
        launcher.shutdown()
