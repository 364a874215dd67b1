"""``pymlc serve`` under real signals and a taken port: SIGKILL leaves no server running as an
orphan and no temporary folder, and the next ``pymlc serve`` takes the same socket; a busy TCP
port is one clear error line, exit 1, and no Unix socket left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from servers import PYTHON, ROOT, Process
from serving_model import write_sink

from pymlc.runtime_stub import health

READY = r"^pymlc: serving sink \S+ on (?P<addresses>.*)$"


def _serve(folder: Path, tmp: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "pymlc", "serve", str(folder / "pyml.yaml"), *args]


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp))  # pymlc's temporary folders land here


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and text in command:
            found.append(int(entry.name))
    return found


def test_sigkill_leaves_no_orphan_and_no_folder_and_the_socket_serves_again(
        tmp_path: Path) -> None:
    folder = write_sink(tmp_path / "sink")
    sock, tmp = tmp_path / "sink.sock", tmp_path / "tmp"
    first = Process(_serve(folder, tmp, "--socket", str(sock)), READY, env=_env(tmp))
    assert health.check(f"unix:{sock}")
    first.process.send_signal(signal.SIGKILL)
    assert first.process.wait(60) == -signal.SIGKILL
    orphans = _processes_naming(str(sock))
    for pid in orphans:  # what the assertions below must not find; end it either way
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], "a server outlived its pymlc serve"
    assert not _listening(sock)
    assert list(tmp.iterdir()) == [], "pymlc serve left its temporary folder"
    first.stop()
    second = Process(_serve(folder, tmp, "--socket", str(sock)), READY, env=_env(tmp))
    try:
        assert health.check(f"unix:{sock}")
        assert list(tmp.iterdir()) == []  # removed once the model was loaded
    finally:
        assert second.stop() == 0, second.text()
    assert not sock.exists()


def test_a_busy_port_is_one_clear_error_and_leaves_no_socket(tmp_path: Path) -> None:
    folder = write_sink(tmp_path / "sink")
    sock, tmp = tmp_path / "sink.sock", tmp_path / "tmp"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(_serve(folder, tmp, "--socket", str(sock), "--port", str(port)),
                              env=_env(tmp), cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"pymlc: error: cannot listen on 127.0.0.1:{port}: the port is in use;"
                     " stop what listens there or choose another port (--port)"], done.stderr
    assert not sock.exists()
    assert list(tmp.iterdir()) == []
