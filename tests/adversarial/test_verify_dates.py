"""``pymlc verify`` on a model whose inputs and outputs are dates and timestamps, nullable ones
with nulls among the examples (issue 20, item 7): in-process, the serving container and the
batch container agree with each other and with ``examples.output``; a real difference of one
microsecond in the containers still fails.

The model uses pandas' defaults (nanosecond timestamps, naive or UTC-aware); the examples give
timestamps with ``Z``, with an offset and without a zone (which means UTC). The spec is written
into a temporary folder with its own image repository; its images are removed afterwards.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_models import containers_of, pymlc, remove_images, unique_repository, write_model

from pymlc.verify import LABEL

pytestmark = pytest.mark.docker

FIELDS = """\
inputs:
  - {name: day, type: date}
  - {name: maybe_day, type: date, nullable: true}
  - {name: at, type: timestamp}
  - {name: maybe_at, type: timestamp, nullable: true}
outputs:
  - {name: next_day, type: date}
  - {name: maybe_next_day, type: date, nullable: true}
  - {name: hour_later, type: timestamp}
  - {name: maybe_hour_later, type: timestamp, nullable: true}
  - {name: day_of_year, type: int64}
"""
EXAMPLES = "examples:\n  input: examples/input.json\n  output: examples/output.json\n"

MODEL = '''
from __future__ import annotations

import pathlib

import pandas as pd

from pymlc import DataFrameModel

HERE = pathlib.Path(__file__).resolve().parent


class DatesModel(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        # Inside an image only, and only when the test asks: a real difference between paths.
        self.shift = str(HERE) == "/opt/pyml/model" and (HERE / "shift.txt").exists()

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        # pandas' defaults on purpose: nanoseconds, naive or UTC-aware.
        day = pd.to_datetime(df["day"]).astype("datetime64[ns]")
        at = pd.to_datetime(df["at"], utc=True).astype("datetime64[ns, UTC]")
        maybe_at = pd.to_datetime(df["maybe_at"]).astype("datetime64[ns]")
        out = pd.DataFrame({
            "next_day": day + pd.Timedelta(days=1),
            "maybe_next_day": pd.to_datetime(df["maybe_day"]) + pd.Timedelta(days=1),
            "hour_later": at + pd.Timedelta(hours=1),
            "maybe_hour_later": maybe_at + pd.Timedelta(hours=1),
            "day_of_year": day.dt.dayofyear.astype("int64"),
        })
        if self.shift:
            out["maybe_hour_later"] += pd.Timedelta(microseconds=1)
        return out
'''

INPUT = [
    {"day": "2024-02-28", "maybe_day": "2024-02-29", "at": "2024-03-31T01:30:00.123456Z",
     "maybe_at": None},
    {"day": "1969-12-31", "maybe_day": None, "at": "1970-01-01T02:00:00+02:00",
     "maybe_at": "2038-01-19T03:14:07.999999Z"},
    {"day": "2000-01-01", "maybe_day": "1900-03-01", "at": "1999-12-31T23:59:59.5",
     "maybe_at": "1960-06-15T12:00:00Z"},
]
OUTPUT = [
    {"next_day": "2024-02-29", "maybe_next_day": "2024-03-01",
     "hour_later": "2024-03-31T02:30:00.123456Z", "maybe_hour_later": None, "day_of_year": 59},
    {"next_day": "1970-01-01", "maybe_next_day": None, "hour_later": "1970-01-01T01:00:00Z",
     "maybe_hour_later": "2038-01-19T04:14:07.999999Z", "day_of_year": 365},
    {"next_day": "2000-01-02", "maybe_next_day": "1900-03-02",
     "hour_later": "2000-01-01T00:59:59.5Z", "maybe_hour_later": "1960-06-15T13:00:00Z",
     "day_of_year": 1},
]


@pytest.fixture(scope="module")
def repository(engine: Any) -> Iterator[str]:
    name = unique_repository("verify-dates")
    yield name
    remove_images(engine, name)


@pytest.fixture(scope="module")
def dates_spec(tmp_path_factory: pytest.TempPathFactory, repository: str) -> Path:
    return write_model(tmp_path_factory.mktemp("verify-dates") / "dates", repository=repository,
                       entrypoint="model:DatesModel", code=MODEL, fields=FIELDS,
                       sections=EXAMPLES,
                       files={"examples/input.json": json.dumps(INPUT, indent=1),
                              "examples/output.json": json.dumps(OUTPUT, indent=1)})


@pytest.fixture(autouse=True)
def no_containers_left(engine: Any, repository: str) -> Iterator[None]:
    yield
    left = containers_of(engine, LABEL, [repository])
    assert not left, left


def _verify(spec: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = pymlc("verify", str(spec), "--format", "json")
    assert "Traceback" not in done.stderr, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done, report


def test_dates_and_timestamps_agree_on_every_path(dates_spec: Path) -> None:
    done, report = _verify(dates_spec)
    assert done.returncode == 0, done.stdout + done.stderr
    paths = {p["name"]: p for p in report["paths"]}
    assert list(paths) == ["in-process", "serving", "batch"]
    assert all(p["ok"] for p in paths.values()), report["paths"]
    assert report["problems"] == [] and report["notes"] == []
    assert len(report["rows"]) == 3 * 5 and all(row["match"] for row in report["rows"])
    cells = {(r["row"], r["field"]): r["values"] for r in report["rows"]}
    for column in ("in-process", "serving", "batch", "expected"):
        assert cells[(0, "maybe_hour_later")][column] == "null"
        assert cells[(1, "maybe_next_day")][column] == "null"
        assert cells[(1, "hour_later")][column].startswith("1970-01-01T01:00:00")
        assert cells[(1, "maybe_hour_later")][column].startswith("2038-01-19T04:14:07.999999")
        assert cells[(2, "maybe_next_day")][column].startswith("1900-03-02")


def test_one_microsecond_of_difference_fails(dates_spec: Path) -> None:
    shift = dates_spec.parent / "shift.txt"
    shift.write_text("in the images, maybe_hour_later is one microsecond late\n")
    try:
        done, report = _verify(dates_spec)
    finally:
        shift.unlink()
    assert done.returncode == 1, done.stdout + done.stderr
    paths = {p["name"]: p for p in report["paths"]}
    assert all(p["ok"] for p in paths.values()), report["paths"]  # they ran; they disagree
    wrong = {(r["row"], r["field"]) for r in report["rows"] if not r["match"]}
    assert wrong == {(1, "maybe_hour_later"), (2, "maybe_hour_later")}
    assert any(p.startswith("row 1, maybe_hour_later: serving, batch differ from in-process")
               for p in report["problems"]), report["problems"]


def test_a_zone_less_timestamp_after_one_with_an_offset_is_utc(tmp_path: Path) -> None:
    """pandas alone would give the third value the second one's +02:00."""
    from pymlc.runtime_stub import checks, codecs
    from pymlc.runtime_stub.config import FieldConfig

    path = tmp_path / "input.json"
    path.write_text(json.dumps([{"at": "2024-01-01T00:00:00Z"}, {"at": "2024-01-01T02:00:00+02:00"},
                                {"at": "2024-01-01T00:00:00"}, {"at": None},
                                {"at": "2024-01-01 00:00:00.000001"}]))
    specs = checks.column_specs([FieldConfig("at", 1, "timestamp", True, None)])
    at = checks.conform_columns(codecs.read_columns(path, specs), specs)["at"]
    assert [str(v) for v in at] == ["2024-01-01 00:00:00", "2024-01-01 00:00:00",
                                    "2024-01-01 00:00:00", "NaT", "2024-01-01 00:00:00.000001"]
