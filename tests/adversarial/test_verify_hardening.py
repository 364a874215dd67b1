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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pymlc.image.hardening import PIDS_LIMIT
from pymlc.verify import LABEL

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 900

SPEC = """\
pyml: 1
name: verify-hardened
version: 0.1.0
description: doubles x
model:
  kind: dataframe
  entrypoint: model:Double
inputs:
  - {name: x, type: float64}
outputs:
  - {name: y, type: float64}
examples:
  input: examples/input.json
serving:
  cpus: 0.5
  memory_mb: 384
image:
  repository: REPOSITORY
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
    repository = f"pymlc-test/verify-hardened-{uuid.uuid4().hex[:8]}"
    (tmp_path / "examples").mkdir()
    (tmp_path / "pyml.yaml").write_text(SPEC.replace("REPOSITORY", repository))
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "examples" / "input.json").write_text(json.dumps([{"x": 1.5}, {"x": -2.0}]))
    yield tmp_path / "pyml.yaml"
    for image in engine.images.list(name=repository):
        engine.images.remove(image.id, force=True)


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
