"""The model gateway: one gRPC endpoint in front of many model servers, routing by model name.

It serves the Open Inference Protocol v2 (``inference.GRPCInferenceService``) for every model
it knows: ``ModelInfer``, ``ModelReady`` and ``ModelMetadata`` go to the model named in the
request (``model_version`` empty = the latest version), as raw bytes: the gateway reads only
the name and version fields off the wire and never decodes the rest. A model's typed service
(``<package>.<Service>/Predict``) is forwarded the same way when its route names it.
``ServerLive``, ``ServerReady`` and ``ServerMetadata`` (whose ``extensions`` list every model
as ``model:NAME/VERSION``) are answered by the gateway itself, as are ``grpc.health.v1`` and
server reflection (which lists the typed services too and asks their models about them).

It runs on an asyncio event loop in a thread of its own: a client that opens a call and never
sends its message holds no thread, so health checks and other calls are answered whatever such
streams do. Compressed requests are refused (UNIMPLEMENTED) before they are inflated: 1 MiB of
gzip can inflate to 1 GiB.

Where a model runs is a :class:`Backend`'s business: :class:`StaticBackend` talks to servers
that are already running (the Kubernetes pod form, one model container beside this one); the
host-side ``pymlc gateway`` plugs in a backend that starts model containers on demand.

Status codes: an unknown model or version is NOT_FOUND; a model the backend cannot start is
UNAVAILABLE with the reason; a call its model's server refused or broke is retried once when the
backend can give it a fresh server, else UNAVAILABLE; every other status (INVALID_ARGUMENT,
INTERNAL, ...) is the model server's own, passed through with its details. No message names a
path on the gateway's host, and user strings in messages are cut short.

Run as ``python -m pymlc.runtime_stub.gateway --route NAME[@VERSION]=unix:PATH --port 8500``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .gateway_backend import Backend, StaticBackend, Upstream, check_health
from .gateway_routes import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Route,
    RouteError,
    RouteTable,
    parse_route,
    peek_model,
    shown,
    version_key,
)
from .gateway_server import LIVENESS_SERVICE, OIP_SERVICE, ROUTED_METHODS, Front, Gateway

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "LIVENESS_SERVICE",
    "OIP_SERVICE",
    "ROUTED_METHODS",
    "Backend",
    "Front",
    "Gateway",
    "Route",
    "RouteError",
    "RouteTable",
    "StaticBackend",
    "Upstream",
    "check_health",
    "main",
    "parse_route",
    "peek_model",
    "serve_until_signalled",
    "shown",
    "version_key",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the given routes until SIGTERM/SIGINT, then drain and exit 0.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 after a clean shutdown; 1 if the gateway could not start; 2 on bad arguments.
    """
    args = _parser().parse_args(argv)
    if args.socket is None and args.port is None:
        print("pymlc gateway: error: give --socket PATH and/or --port N", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        services = dict(_pair(s) for s in args.service)
        routes = [parse_route(r, services) for r in args.route]
        table = RouteTable(routes)  # refuses duplicates before anything starts
        gateway = Gateway(table.routes, StaticBackend(routes), threads=args.threads)
    except ValueError as exc:
        print(f"pymlc gateway: error: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(gateway, socket=args.socket, port=args.port, host=args.host,
                                 grace=args.grace)


def serve_until_signalled(gateway: Gateway, *, socket: str | None, port: int | None,
                          host: str, grace: float, front: Front | None = None) -> int:
    """Start ``gateway``, print a ready line on stderr, and stop it on SIGTERM or SIGINT.

    The Unix sockets listened on are removed after a clean shutdown.

    Args:
        gateway: the gateway, listening on ``socket`` and/or ``port``.
        socket: Unix socket to listen on.
        port: TCP port to listen on (0 = any free).
        host: TCP interface.
        grace: seconds in-flight calls may take after the signal.
        front: a proxy that listens for clients in front of the gateway (then ``socket`` is
            the gateway's internal socket); started after the gateway, stopped before it.

    Returns:
        0 after a clean shutdown, 1 if it could not listen.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        addresses = gateway.start(socket=socket, port=port, host=host)
    except OSError as exc:
        print(f"pymlc gateway: error: {exc}", file=sys.stderr)
        gateway.stop(0)
        return 1
    listened = list(addresses)
    if front is not None:
        try:
            addresses = front.start()
        except OSError as exc:
            print(f"pymlc gateway: error: {exc}", file=sys.stderr)
            gateway.stop(0)
            _remove_sockets(listened)
            return 1
        listened += addresses
    models = ", ".join(r.key for r in gateway.table.routes)
    print(f"pymlc: gateway serving {models} on {', '.join(addresses)}", file=sys.stderr,
          flush=True)
    stop.wait()
    print("pymlc: gateway stopping; finishing in-flight calls", file=sys.stderr, flush=True)
    deadline = time.monotonic() + grace
    if front is not None:  # first: its in-flight calls may still need the gateway
        front.stop(grace)
    gateway.stop(max(0.0, deadline - time.monotonic()))
    _remove_sockets(listened)
    print("pymlc: gateway stopped", file=sys.stderr, flush=True)
    return 0


def _remove_sockets(addresses: Sequence[str]) -> None:
    """Remove the socket files of ``unix:`` addresses this process listened on."""
    for address in addresses:
        if not address.startswith("unix:"):
            continue
        path = Path(address.removeprefix("unix:"))
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        except FileNotFoundError:
            pass


def _pair(text: str) -> tuple[str, str]:
    service, sep, model = text.partition("=")
    if not sep or not service or not model:
        raise ValueError(f"bad --service {text!r}: expected SERVICE=NAME[@VERSION]")
    return service, model


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pymlc.runtime_stub.gateway",
                                description="Route OIP v2 calls to model servers by model name.")
    p.add_argument("--route", action="append", default=[], required=True,
                   metavar="NAME[@VERSION]=TARGET",
                   help="a model and its server's target (unix:PATH or HOST:PORT); repeat")
    p.add_argument("--service", action="append", default=[], metavar="SERVICE=NAME[@VERSION]",
                   help="forward the typed service SERVICE (e.g. pyml.fare_estimator.v1."
                   "FareEstimator) to that model; repeat")
    p.add_argument("--socket", help="Unix socket to listen on")
    p.add_argument("--port", type=int, help="TCP port to listen on (0 = any free)")
    p.add_argument("--host", default="127.0.0.1", help="TCP interface (default: 127.0.0.1)")
    p.add_argument("--threads", type=int, default=16,
                   help="threads for blocking work; calls hold none (default: 16)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds in-flight calls may take after SIGTERM (default: 10)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


if __name__ == "__main__":
    sys.exit(main())
