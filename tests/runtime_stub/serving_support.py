"""Helpers for the serving tests: build a spec into a temp folder and run real server processes.

Servers always run as child processes, as in production; the test process holds tritonclient,
whose ``inference`` proto package the runtime then borrows (see ``oip``) if it imports it.
"""

from __future__ import annotations

from pathlib import Path

from servers import PYTHON, ROOT, SPECS, START_TIMEOUT, Server, build, model_env, stubs

__all__ = ["IN_PREDICT", "PYTHON", "ROOT", "SPECS", "START_TIMEOUT", "Server", "build",
           "model_env", "stubs", "write_probe"]

IN_PREDICT = "probe: a slow call is in predict"  # the probe's stderr line, a slow call begun


PROBE_SPEC = """\
pyml: 1
name: probe
version: 0.3.0
description: A test model that sleeps, raises or breaks its contract on request
model:
  kind: dataframe
  entrypoint: model:Probe
inputs:
  - {name: x, type: float64}
  - {name: delay_ms, type: int32}
  - {name: day, type: date, nullable: true}
  - {name: label, type: string, nullable: true}
outputs:
  - {name: y, type: float64}
  - {name: day_out, type: date, nullable: true}
  - {name: label_length, type: int64, nullable: true}
serving:
  max_message_bytes: 65536
  timeout_ms: 5000
  threads: 4
"""

PROBE_MODEL = '''\
"""x < 0 raises; x == 13 returns a wrong column; delay_ms sleeps (saying so); else y = 2x."""

import sys
import time

import pandas as pd

from pymlc import DataFrameModel


class Probe(DataFrameModel):
    def __init__(self, artifacts):
        self.artifacts = artifacts

    def predict(self, df):
        if (df["x"] < 0).any():
            raise ValueError("x must not be negative")
        if df["delay_ms"].max() > 0:
            print("probe: a slow call is in predict", file=sys.stderr, flush=True)
        time.sleep(float(df["delay_ms"].max()) / 1000)
        if (df["x"] == 13).any():
            return pd.DataFrame({"unlucky": df["x"]})
        lengths = pd.array([None if s is None else len(s) for s in df["label"]], dtype="Int64")
        return pd.DataFrame({"y": df["x"] * 2, "day_out": df["day"], "label_length": lengths})
'''


def write_probe(folder: Path) -> Path:
    """A spec folder with the probe model; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyml.yaml").write_text(PROBE_SPEC)
    (folder / "model.py").write_text(PROBE_MODEL)
    return folder
