"""Parquet as pandas writes it by default: nanosecond timestamps, naive and time-zone aware.
``pymlc batch`` reads them (naive = UTC, the session time zone) exactly as the model server
decodes the same file sent by ``pymlc predict``; a value with digits below the microsecond is
refused by both, the batch job naming its rows in one line, with no Java trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from batch_runs import Batch
from servers import Server

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree

pytestmark = pytest.mark.spark

SPEC = """\
pyml: 1
name: clock-reader
version: 1.0.0
model: {kind: dataframe, entrypoint: "clock:Clock"}
inputs: [{name: naive, type: timestamp}, {name: aware, type: timestamp}]
outputs: [{name: naive_us, type: int64}, {name: aware_us, type: int64}]
batch: {passthrough: [event_id, logged_at]}
"""
MODEL = """\
from __future__ import annotations

import pandas as pd

from pymlc import DataFrameModel


class Clock(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({name + "_us": df[name].to_numpy().astype("datetime64[us]")
                             .astype("int64") for name in ("naive", "aware")})
"""
TIMES = ["1969-07-20 20:17:40.000001", "2024-03-31 00:59:59.999999", "2024-03-31 01:00:00",
         "2024-10-27 02:30:00.123456", "2038-01-19 03:14:08"]


def _spec(folder: Path) -> Path:
    folder.mkdir()
    (folder / "pyml.yaml").write_text(SPEC, encoding="utf-8")
    (folder / "clock.py").write_text(MODEL, encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return folder / "pyml.yaml"


def _events(path: Path, times: list[str]) -> pd.DataFrame:
    """Written with pandas' defaults: datetime64[ns], naive, and aware (Paris, DST included)."""
    stamps = pd.to_datetime(times, format="ISO8601")
    frame = pd.DataFrame({"event_id": range(len(times)), "naive": stamps,
                          "aware": stamps.tz_localize("UTC").tz_convert("Europe/Paris"),
                          "logged_at": stamps + pd.Timedelta(microseconds=7)})
    frame.to_parquet(path)
    return frame


def _online(spec: Path, rows: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    socket = tmp_path / "clock.sock"
    server = Server(spec.parent / "generated", spec.parent, "--socket", str(socket))
    try:
        return subprocess.run([sys.executable, "-m", "pymlc", "predict", str(spec), "--input",
                               str(rows), "--socket", str(socket), "--format", "json"],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.stop()


def test_pandas_default_timestamps_are_read_as_the_server_reads_them(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "clock")
    frame = _events(tmp_path / "events.parquet", TIMES)
    schema = pq.read_schema(tmp_path / "events.parquet")
    assert str(schema.field("naive").type) == "timestamp[ns]"  # what pandas writes by default
    assert str(schema.field("aware").type) == "timestamp[ns, tz=Europe/Paris]"
    inputs = tmp_path / "inputs.parquet"
    frame[["naive", "aware"]].to_parquet(inputs)
    online = _online(spec, inputs, tmp_path)
    assert online.returncode == 0, online.stderr

    job = Batch([str(spec), "--query", f"SELECT * FROM parquet.`{tmp_path / 'events.parquet'}`",
                 "--output-table", "clock.events", "--warehouse", str(tmp_path / "wh")],
                cwd=tmp_path)
    err = job.finish()
    assert job.process.returncode == 0, err
    table = pq.read_table(tmp_path / "wh" / "clock.db" / "events").to_pandas()
    table = table.sort_values("event_id", ignore_index=True)
    expected = pd.DataFrame(json.loads(online.stdout))
    assert table["naive_us"].tolist() == expected["naive_us"].tolist()
    assert table["aware_us"].tolist() == expected["aware_us"].tolist()
    assert table["naive_us"].tolist() == table["aware_us"].tolist()  # the same instants
    logged = pd.to_datetime(table["logged_at"]).dt.tz_localize(None)
    assert logged.tolist() == frame["logged_at"].tolist()  # a passthrough keeps its value


def test_digits_below_the_microsecond_are_refused_naming_the_rows(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "clock")
    times = [*TIMES[:3], "2024-05-01 12:00:00.000000001", *TIMES[3:]]
    frame = _events(tmp_path / "events.parquet", times)
    inputs = tmp_path / "inputs.parquet"
    frame[["naive", "aware"]].to_parquet(inputs)
    online = _online(spec, inputs, tmp_path)
    assert online.returncode != 0 and "microseconds" in online.stderr, online.stderr

    job = Batch([str(spec), "--query", f"SELECT * FROM parquet.`{tmp_path / 'events.parquet'}`",
                 "--output-table", "clock.events", "--warehouse", str(tmp_path / "wh")],
                cwd=tmp_path)
    err = job.finish()
    assert job.process.returncode == 1, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "bad rows: naive: 1 timestamp(s) with digits below the microsecond" in lines[0]
    assert "aware: 1 timestamp(s) with digits below the microsecond" in lines[0]
    assert "(rows with event_id 3)" in lines[0]
    assert "Traceback" not in err and "at org.apache" not in err and "py4j" not in err
    assert not (tmp_path / "wh" / "clock.db").exists()
