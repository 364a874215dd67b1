"""Model folders the contract tests write, build and serve: a spec text and a model module in a
temporary folder, built with the real CLI, served by a real server process (tests/support).

Each test module names its model uniquely: the generated stubs of a build are imported into the
test process, and protobuf's default pool holds one definition per proto file and package.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from servers import PYTHON, ROOT, Server

__all__ = ["Server", "build", "serve", "write_model"]


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


def serve(generated: Path, spec: Path, socket: Path) -> Server:
    """A real server of the build in ``generated``, on a Unix socket."""
    return Server(generated, spec.parent, "--socket", str(socket))
