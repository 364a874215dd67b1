"""Child processes the serving and gateway tests share: a process that prints a ready line
on stderr and stops with SIGTERM, the model server built on it, and the typed stubs of a build.

Servers never run in the test process: their OIP stubs and tritonclient's share the
``inference`` proto package, which one process can hold only once.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PYTHON = sys.executable
START_TIMEOUT = 120.0
SERVE_READY = r"^pymlc: serving \S+ \S+ on (?P<addresses>.*)$"


class Process:
    """A child process that prints a ready line on stderr; stopped with SIGTERM."""

    def __init__(self, command: Sequence[str], ready: str, *,
                 env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(list(command), env=env, cwd=ROOT, text=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log: list[str] = []
        self.addresses: list[str] = []
        self._pattern = re.compile(ready)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or not self.addresses:
            self.process.kill()
            self.stop()
            raise RuntimeError(f"{command[:4]} did not start:\n{self.text()}")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            found = self._pattern.search(line.strip())
            if found:
                self.addresses = found.group("addresses").split(", ")
                self._ready.set()
        self._ready.set()

    @property
    def unix(self) -> str:
        return next(a for a in self.addresses if a.startswith("unix:"))

    @property
    def tcp(self) -> str:
        return next(a for a in self.addresses if not a.startswith("unix:"))

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout)
        self._reader.join(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def text(self) -> str:
        return "".join(self.log)


def model_env(generated: Path, spec_dir: Path) -> dict[str, str]:
    """The environment the image gives the runtime: the built model.json and the spec folder."""
    env = dict(os.environ, PYML_MODEL_CONFIG=str(generated / "model.json"),
               PYML_MODEL_ROOT=str(spec_dir), PYTHONPATH=str(ROOT))
    env.pop("PYML_LOG_LEVEL", None)
    return env


class Server(Process):
    """``python -m pymlc.runtime_stub.serve`` in a child process, stopped with SIGTERM."""

    def __init__(self, generated: Path, spec_dir: Path, *args: str) -> None:
        super().__init__([PYTHON, "-m", "pymlc.runtime_stub.serve", *args], SERVE_READY,
                         env=model_env(generated, spec_dir))


def build(spec_dir: Path, out: Path) -> Path:
    """Compile ``spec_dir/pyml.yaml`` into ``out`` (never the spec's own generated/)."""
    subprocess.run([PYTHON, "-m", "pymlc", "build", str(spec_dir / "pyml.yaml"), "-o", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    return out


def peak_rss(pid: int) -> int:
    """The peak resident memory of a live process so far (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def stubs(generated: Path, module: str) -> tuple[ModuleType, ModuleType]:
    """Import the typed ``_pb2`` and ``_pb2_grpc`` modules of a built spec."""
    if str(generated) not in sys.path:
        sys.path.insert(0, str(generated))
    return importlib.import_module(f"{module}_pb2"), importlib.import_module(f"{module}_pb2_grpc")
