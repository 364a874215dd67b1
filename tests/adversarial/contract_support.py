"""Model folders the contract tests write, build and serve: a spec text and a model module in a
temporary folder, built with the real CLI, served by a real server process (tests/support).

Each test module names its model uniquely: the generated stubs of a build are imported into the
test process, and protobuf's default pool holds one definition per proto file and package.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from servers import PYTHON, ROOT, Server

__all__ = ["Server", "build", "dataframe_model", "dataframe_spec", "serving", "write_model"]

_MODEL = """import numpy as np
import pandas as pd

from pymlc import DataFrameModel


class {name}(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df):
{body}
"""


def dataframe_spec(name: str, model: str, inputs: list[str], outputs: list[str]) -> str:
    """A dataframe spec: each input and output a YAML flow mapping, ``{name: x, type: ...}``."""
    lines = ["pyml: 1", f"name: {name}", "version: 1.0.0",
             f"model: {{kind: dataframe, entrypoint: model:{model}}}", "inputs:",
             *(f"  - {field}" for field in inputs), "outputs:", *(f"  - {f}" for f in outputs)]
    return "\n".join(lines) + "\n"


def dataframe_model(name: str, predict: str) -> str:
    """A model module: class ``name`` whose ``predict(self, df)`` runs ``predict``."""
    body = textwrap.indent(textwrap.dedent(predict).strip("\n"), " " * 8)
    return _MODEL.format(name=name, body=body)


def write_model(folder: Path, spec: str, model: str) -> Path:
    """``folder`` with ``pyml.yaml`` and ``model.py``; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(model, encoding="utf-8")
    path = folder / "pyml.yaml"
    path.write_text(spec, encoding="utf-8")
    return path


def build(spec: Path, out: Path) -> Path:
    """``pymlc build SPEC -o OUT`` (which also writes the lock beside the spec); returns OUT."""
    result = subprocess.run([PYTHON, "-m", "pymlc", "build", str(spec), "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return out


@contextmanager
def serving(generated: Path, spec: Path, socket: Path, *,
            stubs: Path | None = None) -> Iterator[tuple[Server, ModuleType, ModuleType]]:
    """A real server of the build in ``generated`` on a Unix socket, with the typed stubs of
    ``stubs`` (default: that build) imported into this process; stopped (exit 0) after."""
    server = Server(generated, spec.parent, "--socket", str(socket))
    folder = str(stubs or generated)
    sys.path.insert(0, folder)
    try:
        (module,) = (p.stem for p in Path(folder).glob("*_pb2.py"))
        yield server, importlib.import_module(module), importlib.import_module(f"{module}_grpc")
    finally:
        sys.path.remove(folder)
        assert server.stop() == 0, server.text()
