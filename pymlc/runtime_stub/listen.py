"""Where the model server listens: a Unix socket (mode 0660) and/or a TCP port, bound so that a
failure says which address and why, and leaves no socket file behind."""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import tcp_address

__all__ = ["Listen", "bind", "remove_socket"]


@dataclass(frozen=True)
class Listen:
    """Where to listen: a Unix socket path and/or a TCP port (0 = any free port) on ``host``."""

    socket: str | None = None
    port: int | None = None
    host: str = "127.0.0.1"


def bind(server: Any, listen: Listen) -> list[str]:
    """Add ``listen``'s addresses to a gRPC server (sync or aio) that has not started.

    Args:
        server: the gRPC server.
        listen: where to listen.

    Returns:
        The addresses bound (``unix:PATH``, ``HOST:PORT`` with the port chosen).

    Raises:
        OSError: an address is in use or cannot be bound; the socket file this call created,
            if any, is removed again.
    """
    addresses = []
    try:
        if listen.socket:
            addresses.append(_bind_unix(server, listen.socket))
        if listen.port is not None:
            addresses.append(_bind_tcp(server, listen.host, listen.port))
    except OSError:
        if addresses and listen.socket:
            remove_socket(listen.socket)
        raise
    return addresses


def _bind_unix(server: Any, path: str) -> str:
    _prepare_socket_path(path)
    _add_port(server, f"unix:{path}")
    os.chmod(path, 0o660)  # owner and group (the client's) only
    return f"unix:{path}"


def _bind_tcp(server: Any, host: str, port: int) -> str:
    address = tcp_address(host, port)
    if port:
        _probe_tcp(host, port)  # before gRPC, whose refusal is a log line and a bare error
    return tcp_address(host, _add_port(server, address))


def _add_port(server: Any, address: str) -> int:
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # gRPC: "Failed to bind to address ..."
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen on {address}")
    return int(bound)


def _probe_tcp(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise OSError(f"cannot listen on {tcp_address(host, port)}: {reason}; stop what"
                          " listens there or choose another port (--port)") from None


def _prepare_socket_path(path: str) -> None:
    """Make the socket's folder, and remove a stale socket file left by a dead server."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:  # nobody listening: a leftover from a server that died
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another server is listening on {path}")


def remove_socket(path: str) -> None:
    """Remove the socket file at ``path``, if there is one (never another kind of file)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
