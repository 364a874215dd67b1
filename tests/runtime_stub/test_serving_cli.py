"""``pymlc serve``, ``pymlc predict`` and the examples step of ``pymlc validate``, as a user runs
them."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_support import PYTHON, ROOT, SPECS

pytestmark = pytest.mark.slow  # pymlc serve/predict/validate in child processes

PYMLC = [PYTHON, "-m", "pymlc"]


def pymlc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYMLC, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    sock = tmp_path_factory.mktemp("cli") / "fare.sock"
    server = subprocess.Popen([*PYMLC, "serve", str(SPECS / "fare-estimator" / "pyml.yaml"),
                               "--socket", str(sock)], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True)
    assert server.stderr is not None
    line = ""
    deadline = time.monotonic() + 120
    while "pymlc: serving" not in line and time.monotonic() < deadline:
        line = server.stderr.readline()
        assert line or server.poll() is None, "pymlc serve exited early"
    assert re.search(rf"serving fare-estimator 1\.4\.0 on unix:{re.escape(str(sock))}$",
                     line.strip()), line
    yield sock
    server.send_signal(signal.SIGTERM)
    assert server.wait(60) == 0
    server.stderr.close()
    assert not sock.exists()


def test_predict_prints_json_for_machines(fare_server: Path) -> None:
    spec = SPECS / "fare-estimator"
    done = pymlc("predict", str(spec / "pyml.yaml"), "--input",
                 str(spec / "examples" / "input.json"), "--socket", str(fare_server),
                 "--format", "json")
    assert done.returncode == 0, done.stderr
    expected = json.loads((spec / "examples" / "output.json").read_text())
    got = json.loads(done.stdout)
    np.testing.assert_allclose([r["fare"] for r in got], [r["fare"] for r in expected],
                               rtol=1e-9)


def test_predict_prints_a_table_for_people(fare_server: Path, tmp_path: Path) -> None:
    source = tmp_path / "trips.csv"
    source.write_text("trip_distance_km,city,pickup_hour,passengers\n3.5,paris,8,1\n1,,23,2\n")
    done = pymlc("predict", str(SPECS / "fare-estimator" / "pyml.yaml"), "--input", str(source),
                 "--socket", str(fare_server))
    assert done.returncode == 0, done.stderr
    assert "fare" in done.stdout and len(re.findall(r"\d+\.\d+", done.stdout)) == 2


def test_predict_names_a_bad_column_before_sending(fare_server: Path, tmp_path: Path) -> None:
    source = tmp_path / "bad.json"
    source.write_text(json.dumps([{"trip_distance_km": 1.0, "city": "paris", "pickup_hour": 1,
                                   "passengers": 1000}]))
    done = pymlc("predict", str(SPECS / "fare-estimator" / "pyml.yaml"), "--input", str(source),
                 "--socket", str(fare_server))
    assert done.returncode == 1
    assert "passengers: values 1000..1000 do not fit in int8" in done.stderr


def test_predict_reports_an_unreachable_server(tmp_path: Path) -> None:
    done = pymlc("predict", str(SPECS / "digit-net" / "pyml.yaml"), "--input",
                 str(SPECS / "digit-net" / "examples" / "input.json"), "--socket",
                 str(tmp_path / "nobody.sock"))
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr


def test_validate_runs_the_examples(tmp_path: Path) -> None:
    done = pymlc("validate", str(SPECS / "digit-net" / "pyml.yaml"),
                 str(SPECS / "fare-estimator" / "pyml.yaml"))
    assert done.returncode == 0, done.stderr
    assert "digit-net: 4 row(s) match the expected output" in done.stderr
    assert "fare-estimator: 8 row(s) match the expected output" in done.stderr


def test_validate_reports_mismatches_per_field_and_row(tmp_path: Path) -> None:
    spec = tmp_path / "digits"
    shutil.copytree(SPECS / "digit-net", spec, ignore=shutil.ignore_patterns("generated"))
    expected = json.loads((spec / "examples" / "output.json").read_text())
    expected["label"][2] = 7
    expected["probabilities"][0][0] += 1e-3
    (spec / "examples" / "output.json").write_text(json.dumps(expected))
    done = pymlc("validate", str(spec / "pyml.yaml"))
    assert done.returncode == 1
    assert "label[2]: got 2, expected 7" in done.stderr
    assert "probabilities[0, 0]: got" in done.stderr and "rtol=1e-05" in done.stderr
    as_json = json.loads(pymlc("validate", str(spec / "pyml.yaml"), "--format", "json").stdout)
    assert as_json["ok"] is False and len(as_json["examples_failed"][0]["problems"]) == 2


def test_validate_reports_a_model_that_does_not_load(tmp_path: Path) -> None:
    spec = tmp_path / "digits"
    shutil.copytree(SPECS / "digit-net", spec, ignore=shutil.ignore_patterns("generated"))
    (spec / "artifacts" / "weights.npz").unlink()
    done = pymlc("validate", str(spec / "pyml.yaml"))
    assert done.returncode == 1 and "digit-net: model: model:DigitNet(" in done.stderr
