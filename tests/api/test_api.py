"""The Python API (``pymlc.load`` and ``pymlc.Model``) and the client (``pymlc.Client``), as a
notebook uses them: in-process predictions, a local server as a context manager, the client
with and without the spec, dates and timestamps in exact dtypes, errors people can act on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pymlc
from pymlc.api import ExamplesError, Model, ServeError
from pymlc.client import ClientError
from pymlc.compiler.errors import SpecError
from pymlc.runtime_stub.checks import InputError

ROOT = Path(__file__).resolve().parents[2]
FARE = ROOT / "specs" / "fare-estimator"
DIGITS = ROOT / "specs" / "digit-net"

DATES_SPEC = """\
pyml: 1
name: dated
version: 0.2.0
model:
  kind: dataframe
  entrypoint: model:Dated
inputs:
  - {name: day, type: date}
  - {name: note, type: string, nullable: true}
  - {name: code, type: binary}
outputs:
  - {name: next_day, type: date}
  - {name: at, type: timestamp}
  - {name: small, type: int8}
  - {name: echoed, type: binary}
"""
DATES_MODEL = """\
import numpy as np
import pandas as pd
from pymlc import DataFrameModel

class Dated(DataFrameModel):
    def __init__(self, artifacts_dir):
        pass

    def predict(self, df):
        return pd.DataFrame({
            "next_day": df["day"] + np.timedelta64(1, "D"),
            "at": df["day"].astype("datetime64[us]") + np.timedelta64(90, "m"),
            "small": np.arange(len(df), dtype=np.int8),
            "echoed": df["code"],
        })
"""


def _trips() -> pd.DataFrame:
    rows = json.loads((FARE / "examples" / "input.json").read_text())
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fare() -> Model:
    return pymlc.load(FARE)


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> Model:
    folder = tmp_path_factory.mktemp("models") / "dated"
    folder.mkdir()
    (folder / "pyml.yaml").write_text(DATES_SPEC)
    (folder / "model.py").write_text(DATES_MODEL)
    return pymlc.load(folder / "pyml.yaml")


def _dated_input() -> pd.DataFrame:
    return pd.DataFrame({"day": np.array(["2026-02-28", "1969-12-31", "2024-02-29"],
                                         dtype="datetime64[D]"),
                         "note": ["a", None, "c"], "code": [b"\x00\xff", b"", b"z"]})


def test_import_pymlc_loads_neither_the_compiler_nor_grpc() -> None:
    # Model code imports pymlc inside images: the API and client must stay out of that import.
    probe = ("import sys, pymlc; bad = sorted(m for m in sys.modules if m.startswith("
             "('pymlc.compiler', 'pymlc.api', 'pymlc.client', 'grpc', 'jinja2', 'pydantic')));"
             " print(bad); assert not bad; assert pymlc.load and pymlc.Client")
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True)


def test_load_compiles_and_predicts_in_process_like_the_examples(fare: Model) -> None:
    assert (fare.name, fare.version, fare.kind) == ("fare-estimator", "1.4.0", "dataframe")
    result = fare.check_examples()
    assert result is not None and result.compared and result.rows == len(_trips())
    fares = fare.predict(_trips())
    expected = json.loads((FARE / "examples" / "output.json").read_text())
    assert list(fares.columns) == ["fare"] and fares["fare"].dtype == np.float64
    np.testing.assert_allclose(fares["fare"], [row["fare"] for row in expected], rtol=1e-6)


def test_in_process_predict_applies_the_spec_checks(fare: Model) -> None:
    with pytest.raises(InputError, match="pickup_hour"):
        fare.predict(_trips().drop(columns=["pickup_hour"]))


def test_load_of_a_bad_spec_raises_with_file_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "pyml.yaml"
    spec.write_text(DATES_SPEC.replace("type: date}", "type: datee}", 1))
    with pytest.raises(SpecError) as caught:
        pymlc.load(spec)
    assert "pyml.yaml:8:23: error[E110]" in str(caught.value) and "datee" in str(caught.value)


def test_examples_that_differ_raise_naming_the_row(tmp_path: Path) -> None:
    folder = tmp_path / "fare"
    shutil.copytree(FARE, folder, ignore=shutil.ignore_patterns("generated"))
    expected = json.loads((folder / "examples" / "output.json").read_text())
    expected[1]["fare"] += 1.0
    (folder / "examples" / "output.json").write_text(json.dumps(expected))
    with pytest.raises(ExamplesError, match="fare"):
        pymlc.load(folder).check_examples()


def test_build_writes_the_same_files_as_the_cli(fare: Model, tmp_path: Path) -> None:
    changed = fare.build(tmp_path / "api")
    assert {p.name for p in changed} >= {"model.json", "Dockerfile"}
    subprocess.run([sys.executable, "-m", "pymlc", "build", str(FARE / "pyml.yaml"),
                    "--out", str(tmp_path / "cli")], check=True, capture_output=True)
    api = {p.relative_to(tmp_path / "api"): p.read_bytes()
           for p in (tmp_path / "api").rglob("*") if p.is_file()}
    cli = {p.relative_to(tmp_path / "cli"): p.read_bytes()
           for p in (tmp_path / "cli").rglob("*") if p.is_file()}
    assert api == cli
    assert fare.build(tmp_path / "api") == []  # up to date: nothing rewritten


def test_serve_yields_a_client_whose_predictions_match_in_process(fare: Model) -> None:
    with fare.serve() as client:
        assert (client.name, client.version) == ("fare-estimator", "1.4.0")
        socket = Path(client.target.removeprefix("unix:"))
        online = client.predict(_trips())
        # One row, and a nullable column left out (an older caller's request).
        one = client.predict(_trips().drop(columns=["city"]).iloc[:1])
    pd.testing.assert_frame_equal(online, fare.predict(_trips()))
    assert len(one) == 1
    assert not socket.parent.exists()  # the server stopped and its folder is gone


def test_client_discovers_dates_timestamps_and_narrow_types_from_the_server(
        dated: Model) -> None:
    inputs = _dated_input()
    with dated.serve() as served:
        with pymlc.Client(served.target) as client:  # the address only: no spec
            online = client.predict(inputs)
        with pymlc.Client(served.target, spec=dated.spec_path) as by_spec:
            from_spec = by_spec.predict(inputs)
    local = dated.predict(inputs)
    assert str(online.dtypes.to_dict()) == str(local.dtypes.to_dict())
    assert online["next_day"].dtype.kind == "M"  # a date, not the int32 days it travels as
    assert online["small"].dtype == np.int8  # not the int32 it travels as
    pd.testing.assert_frame_equal(online, local)
    pd.testing.assert_frame_equal(from_spec, local)


def test_client_errors_name_the_problem_and_the_status(fare: Model, tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot reach a model server") as unreachable:
        pymlc.Client(tmp_path / "nothing.sock")
    assert unreachable.value.code == "UNAVAILABLE"
    with fare.serve() as client:
        with pytest.raises(ClientError, match="pass a pandas DataFrame"):
            client.predict([1.0, 2.0])  # type: ignore[arg-type]
        as_columns = {str(c): v.to_list() for c, v in _trips().items()}
        pd.testing.assert_frame_equal(client.predict(as_columns), client.predict(_trips()))
        with pytest.raises(ClientError, match="pickup_hour") as local:
            client.predict(_trips().drop(columns=["pickup_hour"]))
        assert local.value.code is None  # refused before sending
        bad_hours = _trips().assign(pickup_hour=np.full(len(_trips()), 2**40))
        with pytest.raises(ClientError, match="pickup_hour"):
            client.predict(bad_hours)


def test_client_of_a_tensor_model_takes_and_returns_arrays() -> None:
    digits = pymlc.load(DIGITS)
    examples = json.loads((DIGITS / "examples" / "input.json").read_text())
    pixels = np.asarray(examples["pixels"], dtype=np.float32)
    with digits.serve() as client:
        online = client.predict({"pixels": pixels})
        with pytest.raises(ClientError, match="tensor model"):
            client.predict(pd.DataFrame({"pixels": [1.0]}))
    local = digits.predict({"pixels": pixels})
    assert online.keys() == local.keys()
    for name, array in local.items():
        assert online[name].dtype == array.dtype
        np.testing.assert_array_equal(online[name], array)


def test_serve_of_a_model_that_cannot_load_raises_with_its_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "pyml.yaml").write_text(DATES_SPEC.replace("name: dated", "name: broken"))
    (folder / "model.py").write_text("raise RuntimeError('weights missing: w.bin')\n")
    with pytest.raises(ServeError, match="weights missing"):
        with pymlc.load(folder).serve():
            pass
