"""``pymlc verify`` runs its serving container hardened exactly as the gateway runs model
containers (issue 20, item 15): no capabilities, no privilege escalation, the spec's CPU and
memory limits, a process limit, a read-only root, no network. The batch container has no
network, no capabilities and no privilege escalation either.

The containers are inspected while a real ``pymlc verify`` runs. The spec sets its own
``serving.cpus`` and ``serving.memory_mb``, so the values seen are the spec's, not defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_models import ROOT, remove_images, unique_repository, write_model

from pymlc.image.hardening import PIDS_LIMIT
from pymlc.verify import LABEL

pytestmark = pytest.mark.docker

DEADLINE_S = 900

SECTIONS = """\
examples:
  input: examples/input.json
serving:
  cpus: 0.5
  memory_mb: 384
"""

MODEL = '''
import pandas as pd

from pymlc import DataFrameModel


class Double(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": df["x"] * 2.0})
'''


@pytest.fixture()
def spec(tmp_path: Path, engine: Any) -> Iterator[Path]:
    repository = unique_repository("verify-hardened")
    yield write_model(tmp_path / "hardened", repository=repository, entrypoint="model:Double",
                      code=MODEL, sections=SECTIONS,
                      files={"examples/input.json": json.dumps([{"x": 1.5}, {"x": -2.0}])})
    remove_images(engine, repository)


def _host_config(engine: Any, role: str, process: subprocess.Popen[str]) -> dict[str, Any]:
    """The HostConfig of the run's ``role`` container, read while it runs."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        found = engine.containers.list(ignore_removed=True, filters={
            "label": [LABEL, f"pymlc.verify.role={role}"], "status": "running"})
        if found:
            config: dict[str, Any] = found[0].attrs["HostConfig"]
            return config
        time.sleep(0.2)
    raise AssertionError(f"no running verify {role} container within {DEADLINE_S} s")


def test_the_verify_containers_are_hardened(engine: Any, spec: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "pymlc", "verify", str(spec)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        serving = _host_config(engine, "serving", process)
        batch = _host_config(engine, "batch", process)
        stdout, stderr = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stdout + stderr
    assert serving["CapDrop"] == ["ALL"]
    assert serving["SecurityOpt"] == ["no-new-privileges"]
    assert serving["PidsLimit"] == PIDS_LIMIT
    assert serving["Memory"] == serving["MemorySwap"] == 384 * 1024 * 1024
    assert serving["NanoCpus"] == 500_000_000
    assert serving["ReadonlyRootfs"] is True
    assert serving["NetworkMode"] == "none"
    assert "/tmp" in serving["Tmpfs"]
    assert batch["CapDrop"] == ["ALL"]
    assert batch["SecurityOpt"] == ["no-new-privileges"]
    assert batch["NetworkMode"] == "none"
