"""HAProxy as the data path of ``pymlc gateway``: the process, its runtime API, its stats.

A Python gRPC hop decodes every call's frames in Python; HAProxy routes on a call's first
bytes in C, at a fraction of that cost (bench/README.md, "gateway"). So HAProxy listens where
the user asked and the Python gateway listens on an internal socket behind it (see
:mod:`.haproxy_config`). :class:`HAProxy` is both the gateway's front (started after the Python
gateway, soft-stopped before it) and the launcher's fast path (a model's server enabled while its
container serves).

HAProxy never outlives the gateway: it is killed when the thread that started it dies
(``PR_SET_PDEATHSIG``; start it from the main thread), and on every exit path of
``run_gateway``. It runs in its own session, so a terminal's Ctrl-C reaches only the gateway,
which drains it.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import signal
import socket as socketlib
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..compiler.errors import PymlcError
from ..runtime_stub.config import tcp_address
from ..runtime_stub.gateway import Route
from .haproxy_config import (
    MODEL_SERVER,
    ModelServer,
    backend_name,
    bind_address,
    render_config,
)
from .launcher import Usage

__all__ = ["MIN_VERSION", "HAProxy", "HAProxyBinary", "HAProxyError", "find_haproxy",
           "runtime_command", "stat_table"]

log = logging.getLogger("pymlc.gateway")

MIN_VERSION = (2, 4)  # http-request wait-for-body
START_TIMEOUT = 10.0
_EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin")  # Debian's haproxy is in sbin, off users' PATH
_VERSION = re.compile(r"HAProxy version (\d+)\.(\d+)\S*")
_PR_SET_PDEATHSIG = 1


class HAProxyError(PymlcError):
    """HAProxy cannot serve as asked (missing or too old for ``--data-path haproxy``, or the
    state folder too long for its sockets)."""


@dataclass(frozen=True)
class HAProxyBinary:
    """An ``haproxy`` executable and its version."""

    path: str
    version: str


def find_haproxy() -> HAProxyBinary | str:
    """The ``haproxy`` on PATH (or in /usr/sbin), if recent enough; else why not."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_PATH])
    path = shutil.which("haproxy", path=search)
    if path is None:
        return "no haproxy on PATH (apt-get install -y haproxy)"
    try:
        shown = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10,
                               check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} -v failed: {exc}"
    found = _VERSION.search(shown)
    if found is None:
        return f"{path} -v did not say its version"
    if (int(found[1]), int(found[2])) < MIN_VERSION:
        return (f"{path} is HAProxy {found[1]}.{found[2]}; the gateway needs"
                f" {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")
    return HAProxyBinary(path, found[0].removeprefix("HAProxy version "))


class HAProxy:
    """One HAProxy process in front of the Python gateway.

    Args:
        binary: the executable.
        routes: every model version served.
        servers: route key -> the model's server (socket on the host, container CPUs).
        folder: the gateway's state folder (config, runtime API socket and log go here).
        gateway_socket: the Python gateway's internal socket.
        socket: Unix socket to listen on for clients.
        port: TCP port to listen on for clients (0 = a free one, picked here).
        host: TCP interface.
        grace: seconds in-flight calls may take after a soft stop.
        source: the routes file's name (the config's header).
    """

    def __init__(self, binary: HAProxyBinary, routes: Sequence[Route],
                 servers: dict[str, ModelServer], *, folder: Path, gateway_socket: Path,
                 socket: str | None, port: int | None, host: str, grace: float,
                 source: str) -> None:
        self.binary = binary
        self.routes = list(routes)
        self.servers = servers
        self.gateway_socket = gateway_socket
        self.config = folder / "haproxy.cfg"
        self.admin = folder / "haproxy.sock"
        self.log = folder / "haproxy.log"
        self.socket, self.port, self.host, self.grace = socket, port, host, grace
        self.source = source
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # orders runtime API commands; guards _enabled
        self._enabled: set[str] = set()
        self._running = False

    # --- Front -----------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Write the config, start HAProxy and wait until it serves.

        Returns:
            The addresses it listens on for clients.

        Raises:
            OSError: an address is taken, or HAProxy did not start (with its own words).
        """
        binds, addresses = self._listen()
        try:
            config = render_config(self.routes, self.servers, binds=binds,
                                   gateway_socket=str(self.gateway_socket),
                                   admin_socket=str(self.admin), grace=self.grace,
                                   source=self.source)
        except ValueError as exc:  # a path HAProxy's config cannot hold
            raise OSError(f"cannot listen on {', '.join(addresses)} through HAProxy:"
                          f" {exc}") from None
        self.config.write_text(config)
        with self.log.open("wb") as log_file:
            self._process = subprocess.Popen(
                _dying_with_parent([self.binary.path, "-db", "-f", str(self.config)]),
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True)
        self._wait_serving(addresses)
        with self._lock:  # models started before HAProxy (--start eager) are enabled now
            self._running = True
            for key in sorted(self._enabled):
                self._set(key, enabled=True)
        return addresses

    def stop(self, grace: float) -> None:
        """Soft stop: stop listening, let in-flight calls finish (``hard-stop-after`` in the
        config bounds it at ``grace`` s), then make sure the process is gone."""
        with self._lock:
            self._running = False
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGUSR1)
        try:
            process.wait(grace + 2.0)
        except subprocess.TimeoutExpired:
            log.warning("HAProxy did not stop within %.0f s of a soft stop; killing it", grace)
        self.kill()

    def kill(self) -> None:
        """End HAProxy now, if it runs (every exit path of the gateway calls this)."""
        with self._lock:
            self._running = False
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    # --- FastPath (the launcher) -------------------------------------------------------------

    def enable(self, route: Route) -> None:
        """Send the model's calls to its server (its container answers health checks)."""
        with self._lock:
            self._enabled.add(route.key)
            if self._running:
                self._set(route.key, enabled=True)

    def disable(self, route: Route) -> None:
        """Send the model's calls to the Python gateway (before its container stops)."""
        with self._lock:
            self._enabled.discard(route.key)
            if self._running:
                self._set(route.key, enabled=False)

    def usage(self) -> dict[str, Usage]:
        """Each model server's traffic through HAProxy, by route key (empty if HAProxy is not
        running)."""
        with self._lock:
            if not self._running:
                return {}
            try:
                text = self._command("show stat -1 6 -1")  # backends and servers
            except OSError as exc:
                log.warning("cannot read HAProxy's stats: %s", exc)
                return {}
        return _usage(text, {backend_name(r): r.key for r in self.routes})

    def command(self, text: str) -> str:
        """One runtime API command's answer (for tests and debugging)."""
        with self._lock:
            return self._command(text)

    # --- internals ---------------------------------------------------------------------------

    def _listen(self) -> tuple[list[str], list[str]]:
        """HAProxy's bind addresses and the same as shown to people (as the Python gateway
        shows its own); a free port is picked here for port 0."""
        binds, shown = [], []
        if self.socket:
            binds.append(bind_address(socket=self.socket))
            shown.append(f"unix:{self.socket}")
        if self.port is not None:
            port = _check_port(self.host, self.port)
            binds.append(bind_address(host=self.host, port=port))
            shown.append(tcp_address(self.host, port))
        return binds, shown

    def _wait_serving(self, addresses: list[str]) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                self._command("show info")
                return
            except OSError:
                time.sleep(0.02)
        self.kill()
        said = self.log.read_text(errors="replace").splitlines()
        alerts = [line for line in said if "ALERT" in line] or said
        reason = "\n  ".join(alerts[-5:]) or f"no answer within {START_TIMEOUT:.0f} s"
        raise OSError(f"HAProxy could not start listening on {', '.join(addresses)}:\n  {reason}"
                      "\nfree that address or choose another --socket/--port (or serve without"
                      " HAProxy: --data-path python)")

    def _set(self, key: str, *, enabled: bool) -> None:
        """Enable or disable a model's server. Holds _lock."""
        server = f"{backend_name(self._route(key))}/{MODEL_SERVER}"
        # Forced up first: a connection refused earlier may have marked it down.
        text = (f"set server {server} health up; set server {server} state ready" if enabled
                else f"set server {server} state maint")
        try:
            answer = self._command(text).strip()
        except OSError as exc:
            log.warning("%s: cannot %s its HAProxy server: %s", key,
                        "enable" if enabled else "disable", exc)
            return
        if answer:
            log.warning("%s: HAProxy answered %r to %r", key, answer, text)

    def _route(self, key: str) -> Route:
        return next(r for r in self.routes if r.key == key)

    def _command(self, text: str) -> str:
        return runtime_command(self.admin, text)


def runtime_command(admin: Path, text: str) -> str:
    """One command to the HAProxy runtime API listening on ``admin``; its whole answer.

    Raises:
        OSError: nothing answers there.
    """
    with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as conn:
        conn.settimeout(5.0)
        conn.connect(str(admin))
        conn.sendall(text.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def stat_table(stat_csv: str) -> dict[tuple[str, str], dict[str, str]]:
    """A ``show stat`` answer (CSV under a ``# `` header): (proxy, server) -> its row (server
    "BACKEND" is a backend's total, "FRONTEND" a frontend's)."""
    lines = stat_csv.lstrip("# ").splitlines()
    return {(row["pxname"], row["svname"]): row
            for row in csv.DictReader(line for line in lines if line)}


def _usage(stat_csv: str, keys: dict[str, str]) -> dict[str, Usage]:
    """``show stat`` CSV (backends and servers) -> usage of each model server, by route key.
    Calls waiting for the model's server count: in its own queue, or in the backend's."""
    rows = stat_table(stat_csv)
    found = {}
    for proxy, key in keys.items():
        server, backend = rows.get((proxy, MODEL_SERVER)), rows.get((proxy, "BACKEND"), {})
        if server is None:
            continue
        last = int(server.get("lastsess") or -1)
        in_flight = sum(int(row.get(name) or 0) for row, name in
                        ((server, "scur"), (server, "qcur"), (backend, "qcur")))
        found[key] = Usage(in_flight, float(last) if last >= 0 else None)
    return found


def _check_port(host: str, port: int) -> int:
    """``port``, or a free one for 0; an address already taken fails here, in plain words.

    Raises:
        OSError: the address is taken or cannot be bound.
    """
    family = socketlib.AF_INET6 if ":" in host else socketlib.AF_INET
    with socketlib.socket(family, socketlib.SOCK_STREAM) as probe:
        probe.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another"
                          " --port") from None
        return int(probe.getsockname()[1])


# Runs in a fresh Python that then becomes HAProxy (execv keeps the pid): the kernel SIGKILLs it
# when the thread that started it dies. Not a preexec_fn: with one, CPython forks with fork()
# instead of vfork(), which runs grpc's at-fork handlers, and those hung the parent (seen in CI)
# while its gRPC threads were busy.
_PDEATHSIG_EXEC = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent died before prctl: no signal comes
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n")


def _dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the kernel kills it when the calling thread dies."""
    return [sys.executable, "-I", "-c", _PDEATHSIG_EXEC, str(os.getpid()), *argv]
