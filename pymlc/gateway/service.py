"""``pymlc gateway`` put together: read the routes file, choose the data path, connect to the
engine, optionally build missing images, then serve until SIGTERM and remove every container
started.

The data path is HAProxy in front of the Python gateway when ``haproxy`` is installed (``auto``,
the default; see :mod:`.haproxy`), else the Python gateway alone (``python``).
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compiler.errors import PymlcError
from ..compiler.routes import ROUTES_FORMAT
from ..runtime_stub.gateway import Gateway, RouteError, serve_until_signalled
from .haproxy import HAProxy, HAProxyBinary, HAProxyError, find_haproxy
from .launcher import SOCKET_PATH_MAX, Launcher, ModelImage

__all__ = ["GatewayOptions", "RoutesError", "load_routes", "run_gateway"]

log = logging.getLogger("pymlc.gateway")

GATEWAY_SOCKET = "gateway.sock"  # the Python gateway's, in the state folder, behind HAProxy


class RoutesError(PymlcError):
    """The routes file is missing or not one ``pymlc build`` wrote."""


@dataclass(frozen=True)
class GatewayOptions:
    """How ``pymlc gateway`` runs (see its ``--help``)."""

    socket: str | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    start: str = "lazy"
    idle_timeout: float | None = None
    start_timeout: float = 120.0
    state_dir: Path | None = None
    threads: int = 16
    grace: float = 10.0
    build: bool = False
    data_path: str = "auto"


def load_routes(path: Path) -> list[ModelImage]:
    """The models of a routes file written by ``pymlc build``.

    Raises:
        RoutesError: the file is missing, not JSON, or of another format.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RoutesError(f"cannot read the routes file {path}: {exc.strerror}; `pymlc build"
                          " DIR` writes it for a folder of specs") from None
    except ValueError as exc:
        raise RoutesError(f"{path} is not valid JSON ({exc}); rebuild it with `pymlc build`") \
            from None
    if not isinstance(data, dict) or data.get("format") != ROUTES_FORMAT:
        raise RoutesError(f"{path} is not a pymlc routes file of format {ROUTES_FORMAT};"
                          " rebuild it with this pymlc (`pymlc build`)")
    return [_model(entry, path.parent) for entry in data["models"]]


def _model(entry: dict[str, Any], base: Path) -> ModelImage:
    limits = entry["limits"]
    return ModelImage(name=entry["name"], version=entry["version"], image=entry["image"],
                      socket=entry["socket"], service=entry["service"],
                      cpus=float(limits["cpus"]), memory_mb=int(limits["memory_mb"]),
                      max_message_bytes=int(limits["max_message_bytes"]),
                      spec=base / entry["spec"] if entry.get("spec") else None)


def run_gateway(routes_file: Path, options: GatewayOptions, *,
                say: Callable[[str], None] = print) -> int:
    """Serve the models of ``routes_file`` until SIGTERM/SIGINT. Call it from the main thread:
    HAProxy is bound to the life of the thread that starts it.

    Returns:
        0 after a clean shutdown (every container removed); 1 if it could not start.

    Raises:
        RoutesError: a bad routes file.
        HAProxyError: ``--data-path haproxy`` without a usable haproxy.
        EngineUnavailableError: no Docker engine.
    """
    from ..image import connect

    models = load_routes(routes_file)
    haproxy = _haproxy(options.data_path)
    client = connect()
    if options.build:
        _build_missing(client, models, say)
    instance = secrets.token_hex(4)
    state = options.state_dir or Path(tempfile.gettempdir()) / "pymlc-gateway"
    folder = state / instance
    launcher = Launcher(client, models, instance=instance, state_dir=folder,
                        start_timeout=options.start_timeout, idle_timeout=options.idle_timeout,
                        eager=options.start == "eager", grace=options.grace)
    front = None if haproxy is None else _front(haproxy, launcher, folder, options,
                                                routes_file.name)
    launcher.fast_path = front
    launcher.start()
    shown = "python" if haproxy is None else f"haproxy {haproxy.version} ({haproxy.path})"
    say(f"pymlc: gateway {instance}: {len(models)} model(s), containers labelled"
        f" pymlc.gateway={instance}, sockets in {folder}, data path {shown}")
    try:
        if options.start == "eager" and not _start_all(launcher):
            return 1
        gateway = Gateway(launcher.routes, launcher, threads=options.threads)
        if front is None:
            return serve_until_signalled(gateway, socket=options.socket, port=options.port,
                                         host=options.host, grace=options.grace)
        return serve_until_signalled(gateway, socket=str(front.gateway_socket), port=None,
                                     host=options.host, grace=options.grace, front=front)
    finally:
        if front is not None:  # whatever happened, HAProxy does not outlive the gateway
            front.kill()


def _haproxy(data_path: str) -> HAProxyBinary | None:
    """The HAProxy to run, or None for the Python data path.

    Raises:
        HAProxyError: ``haproxy`` was asked for and cannot be used.
    """
    if data_path == "python":
        return None
    found = find_haproxy()
    if isinstance(found, HAProxyBinary):
        return found
    if data_path == "haproxy":
        raise HAProxyError(f"--data-path haproxy: {found}; or use --data-path python")
    log.info("data path python: %s", found)
    return None


def _front(binary: HAProxyBinary, launcher: Launcher, folder: Path, options: GatewayOptions,
           source: str) -> HAProxy:
    internal = folder / GATEWAY_SOCKET
    # HAProxy binds its runtime API socket as PATH.<pid>.tmp first, then renames it.
    if len(str(folder / "haproxy.sock")) + len(".4194304.tmp") > SOCKET_PATH_MAX:
        raise HAProxyError(f"the state folder {folder} is too long for HAProxy's sockets;"
                           " choose a shorter --state-dir")
    return HAProxy(binary, launcher.routes, launcher.servers(), folder=folder,
                   gateway_socket=internal, socket=options.socket, port=options.port,
                   host=options.host, grace=options.grace, source=source)


def _start_all(launcher: Launcher) -> bool:
    try:
        launcher.start_all()
    except RouteError as exc:
        print(f"pymlc gateway: error: {exc}", file=sys.stderr)
        launcher.shutdown()
        return False
    return True


def _build_missing(client: Any, models: list[ModelImage], say: Callable[[str], None]) -> None:
    import docker

    from ..compiler.pipeline import compile_spec
    from ..image import build_image

    for model in models:
        try:
            client.images.get(model.image)
            continue
        except docker.errors.ImageNotFound:
            pass
        if model.spec is None:
            raise RoutesError(f"image {model.image} is missing and the routes file does not"
                              f" name the spec of {model.name}")
        say(f"building {model.image} from {model.spec}")
        built = build_image(compile_spec(model.spec), target="serving", client=client)
        say(f"built {model.image} ({built.id[7:19]}) in {built.seconds:.0f} s")
