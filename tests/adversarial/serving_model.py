"""The model the serving attacks aim at: a dataframe model with a float64 and a nullable string
column and the default serving settings (the limits a user gets without asking), built into a
temporary folder and served by a real child process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from servers import Server, build, stubs

__all__ = ["SERVICE", "SINK_MODEL", "SINK_SPEC", "serve_sink", "served_sink", "sink_stubs",
           "write_sink"]

SERVICE = "pyml.sink.v0.Sink"

SINK_SPEC = """\
pyml: 1
name: sink
version: 0.1.0
model:
  kind: dataframe
  entrypoint: model:Sink
inputs:
  - {name: x, type: float64}
  - {name: label, type: string, nullable: true}
outputs:
  - {name: y, type: float64}
"""

SINK_MODEL = '''\
"""y = x: the model costs nothing, so what is measured is the server."""

import pandas as pd

from pymlc import DataFrameModel


class Sink(DataFrameModel):
    def __init__(self, artifacts):
        self.artifacts = artifacts

    def predict(self, df):
        return pd.DataFrame({"y": df["x"]})
'''


def write_sink(folder: Path, serving: str = "") -> Path:
    """A spec folder with the sink model (``serving`` is appended to the spec); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyml.yaml").write_text(SINK_SPEC + serving)
    (folder / "model.py").write_text(SINK_MODEL)
    return folder


def _generated(folder: Path) -> Path:
    return folder.parent / f"{folder.name}-generated"


def serve_sink(folder: Path, *args: str) -> Server:
    """Build the sink spec in ``folder`` and serve it: ``--socket folder/sink.sock``."""
    generated = build(folder, _generated(folder))
    return Server(generated, folder, "--socket", str(folder / "sink.sock"), *args)


def sink_stubs(folder: Path) -> ModuleType:
    """The typed ``_pb2`` module of the sink spec served from ``folder``."""
    return stubs(_generated(folder), "sink_v0")[0]


def served_sink(tmp_path_factory: Any, name: str,
                serving: str = "") -> Iterator[tuple[Server, ModuleType]]:
    """The body of a fixture: the sink served (and its stubs) until the fixture ends, then
    stopped with SIGTERM, which must end it cleanly."""
    folder = write_sink(tmp_path_factory.mktemp(name) / "sink", serving)
    running = serve_sink(folder)
    yield running, sink_stubs(folder)
    assert running.stop() == 0, running.text()
