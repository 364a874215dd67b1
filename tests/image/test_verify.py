"""``pymlc verify`` end to end with the real Docker engine: both example specs pass three ways;
a model that raises gives a failure report (exit 1, the table printed, each path's error named);
a model that never gets ready in its containers fails within the time-out; SIGTERM removes the
run's containers. No test leaves a ``pymlc.verify`` container behind.

The scratch model is built once per session; its behaviour comes from a file in its folder, so
switching it rebuilds only the image's last layer.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from scratch_models import containers_of

from pymlc.verify import LABEL

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
RUN_TIMEOUT = 1800

# A fare model whose behaviour the file mode.txt beside it selects: "ok", "raise" (predict
# raises everywhere), or "hang-in-image" (the constructor never returns inside an image, so
# neither container gets ready, while in-process works).
BROKEN_MODEL = '''
from __future__ import annotations

import pathlib
import time

import pandas as pd

from pymlc import DataFrameModel

HERE = pathlib.Path(__file__).resolve().parent


class FareModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.mode = (HERE / "mode.txt").read_text().strip()
        if self.mode == "hang-in-image" and str(HERE) == "/opt/pyml/model":
            time.sleep(3600)

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.mode == "raise":
            raise RuntimeError("broken on purpose")
        return pd.DataFrame({"fare": df["trip_distance_km"] * 2.0})
'''




@pytest.fixture(scope="session")
def fare_trained() -> Path:
    spec = SPECS / "fare-estimator"
    if not (spec / "artifacts" / "model.joblib").exists():
        subprocess.run([sys.executable, str(spec / "train.py")], check=True, timeout=300)
    return spec / "pyml.yaml"


@pytest.fixture(scope="session")
def broken_spec(tmp_path_factory: pytest.TempPathFactory, fare_trained: Path) -> Path:
    folder = tmp_path_factory.mktemp("verify") / "broken"
    shutil.copytree(fare_trained.parent, folder,
                    ignore=shutil.ignore_patterns("generated", "__pycache__", "artifacts"))
    (folder / "artifacts").mkdir()
    (folder / "model.py").write_text(BROKEN_MODEL)
    spec = folder / "pyml.yaml"
    text = spec.read_text()
    for old, new in (("name: fare-estimator\n", "name: verify-broken\n"),
                     ("  output: examples/output.json\n", ""),
                     ("  repository: registry.example.com/ml/fare-estimator\n",
                      "  repository: pymlc-test/verify-broken\n")):
        assert old in text
        text = text.replace(old, new)
    spec.write_text(text)
    return spec


# The images these tests verify; other runs on the shared engine have verify containers too.
REPOSITORIES = ["registry.example.com/ml/fare-estimator", "digit-net", "pymlc-test/verify-broken"]


@pytest.fixture(autouse=True)
def no_containers_left(engine: Any) -> Any:
    yield
    left = containers_of(engine, LABEL, REPOSITORIES)
    assert not left, left


def _verify(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymlc", "verify", str(spec), *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)


def _mode(spec: Path, mode: str) -> None:
    (spec.parent / "mode.txt").write_text(mode + "\n")


# --- the example specs -----------------------------------------------------------------------

def test_verify_passes_on_the_dataframe_example(fare_trained: Path) -> None:
    done = _verify(fare_trained)
    assert done.returncode == 0, done.stdout + done.stderr
    header = next(line for line in done.stdout.splitlines() if "in-process" in line)
    for column in ("row", "field", "in-process", "serving", "batch", "expected", "match"):
        assert column in header, done.stdout
    rows = [line for line in done.stdout.splitlines() if "│ fare " in line]
    assert len(rows) == 8 and all(line.rstrip(" │").endswith("yes") for line in rows), \
        done.stdout
    assert "verified: fare-estimator 1.4.0: 8 value(s) agree across in-process, serving," \
           " batch and the expected output" in " ".join(done.stderr.split())


def test_verify_passes_on_the_tensor_example() -> None:
    done = _verify(SPECS / "digit-net" / "pyml.yaml", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["problems"] == []
    paths = {p["name"]: p for p in report["paths"]}
    assert list(paths) == ["in-process", "serving", "batch"]
    assert paths["in-process"]["ok"] and paths["serving"]["ok"]
    if paths["batch"]["ok"]:
        assert report["notes"] == []
    else:  # never a silent pass: the report says the batch column was not verified
        assert paths["batch"]["unsupported"].startswith("not supported for tensor models")
        assert report["notes"] == [f"batch: {paths['batch']['unsupported']}"]
    assert len(report["rows"]) == 4 * 2
    assert all(row["match"] for row in report["rows"])
    first = {(r["row"], r["field"]): r["values"] for r in report["rows"]}
    assert first[(0, "label")]["in-process"] == first[(0, "label")]["expected"] == "0"
    assert first[(0, "label")]["serving"] == "0"


# --- failures --------------------------------------------------------------------------------

def test_a_model_that_raises_gives_a_failure_report(broken_spec: Path) -> None:
    _mode(broken_spec, "raise")
    done = _verify(broken_spec)
    assert done.returncode == 1, done.stdout + done.stderr
    # Log lines of a container are quoted ("  | ..."); pymlc itself shows no traceback.
    assert not any(line.startswith("Traceback") for line in done.stderr.splitlines())
    assert "in-process" in done.stdout and "serving" in done.stdout  # the table is printed
    assert done.stdout.count(" NO ") == 8, done.stdout
    errors = " ".join(done.stderr.split())
    assert "error: in-process: predict raised RuntimeError: broken on purpose" in errors
    assert "error: serving: Predict failed: INTERNAL:" in errors
    assert "error: batch: the batch job exited with code 1" in errors
    assert "RuntimeError: broken on purpose" in errors.split("error: batch:")[1]
    assert "verification failed: verify-broken 1.4.0" in errors


def test_containers_that_never_get_ready_fail_at_the_timeout(broken_spec: Path) -> None:
    # The model hangs for an hour: each path ends by its own 15 s timeout, as its error says.
    _mode(broken_spec, "hang-in-image")
    done = _verify(broken_spec, "--timeout", "15", "--format", "json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    paths = {p["name"]: p for p in report["paths"]}
    assert paths["in-process"]["ok"]
    assert "did not answer its health check on the socket within 15 s" in \
        paths["serving"]["error"]
    assert "the batch job did not finish within 15 s" in paths["batch"]["error"]
    assert report["ok"] is False


def test_sigterm_removes_the_runs_containers(engine: Any, broken_spec: Path) -> None:
    _mode(broken_spec, "hang-in-image")
    process = subprocess.Popen([sys.executable, "-m", "pymlc", "verify", str(broken_spec),
                                "--timeout", "600"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not containers_of(engine, LABEL, ["pymlc-test/verify-broken"]):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no verify container started"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
