"""The model gateway: one gRPC endpoint in front of many model servers, routing by model name.

It serves the Open Inference Protocol v2 (``inference.GRPCInferenceService``) for every model
it knows: ``ModelInfer``, ``ModelReady`` and ``ModelMetadata`` go to the model named in the
request (``model_version`` empty = the latest version), as raw bytes: the gateway reads only
the name and version fields off the wire and never decodes the rest. A model's typed service
(``<package>.<Service>/Predict``) is forwarded the same way when its route names it.
``ServerLive``, ``ServerReady`` and ``ServerMetadata`` (whose ``extensions`` list every model
as ``model:NAME/VERSION``) are answered by the gateway itself, as are ``grpc.health.v1`` and
server reflection.

Where a model runs is a :class:`Backend`'s business: :class:`StaticBackend` talks to servers
that are already running (the Kubernetes pod form, one model container beside this one); the
host-side ``pymlc gateway`` plugs in a backend that starts model containers on demand.

Status codes: an unknown model or version is NOT_FOUND; a model the backend cannot start is
UNAVAILABLE with the reason; every other status (INVALID_ARGUMENT, INTERNAL, ...) is the model
server's own, passed through with its details.

Run as ``python -m pymlc.runtime_stub.gateway --route NAME[@VERSION]=unix:PATH --port 8500``.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from importlib import metadata as dist_metadata
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .config import tcp_address

__all__ = [
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
    "version_key",
]

log = logging.getLogger("pymlc.gateway")

OIP_SERVICE = "inference.GRPCInferenceService"
# Health service name that answers SERVING while the gateway process lives (a liveness probe);
# "" answers SERVING only while every model is reachable (a readiness probe).
LIVENESS_SERVICE = "pymlc.gateway"
# OIP methods whose request has `string name = 1; string version = 2;` (ModelInferRequest calls
# them model_name and model_version): routed to the model they name.
ROUTED_METHODS = ("ModelInfer", "ModelMetadata", "ModelReady")
_MAX_DETAILS = 4000
# Metadata a client library adds by itself; forwarding it would duplicate or confuse it.
_HOP_BY_HOP = frozenset({"user-agent", "te", "content-type", "grpc-accept-encoding",
                         "grpc-encoding", "grpc-timeout"})
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# grpc reports "no deadline" as ~9.2e18 seconds remaining; passed on, that would overflow.
_NO_DEADLINE = 1e9


@dataclass(frozen=True)
class Route:
    """One model version and where its server listens.

    Attributes:
        name: the model's name, as OIP requests give it.
        version: the model's version.
        target: the model server's gRPC target (``unix:PATH`` or ``HOST:PORT``).
        service: the full name of its typed service, forwarded too ("" = OIP only).
        max_message_bytes: the largest request or response to pass through.
    """

    name: str
    version: str
    target: str
    service: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"


class RouteError(Exception):
    """A request cannot be routed: ends the call with ``code`` and this message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key of a semantic version: numeric parts, and a release after its pre-releases."""
    core, _, pre = version.partition("+")[0].partition("-")
    numbers = tuple(int(p) if p.isdigit() else -1 for p in core.split("."))
    tags = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".") if p)
    return (numbers, not pre, tags)


class RouteTable:
    """The models a gateway knows, by name, version and typed service.

    Raises:
        ValueError: two routes for one name and version.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_key: dict[tuple[str, str], Route] = {}
        self._latest: dict[str, Route] = {}
        self._by_service: dict[str, Route] = {}
        for route in sorted(routes, key=lambda r: (r.name, version_key(r.version))):
            if (route.name, route.version) in self._by_key:
                raise ValueError(f"two routes for {route.name} version {route.version}")
            self._by_key[(route.name, route.version)] = route
            self._latest[route.name] = route  # sorted: the last one is the newest
            if route.service:
                self._by_service[route.service] = route

    @property
    def routes(self) -> list[Route]:
        return list(self._by_key.values())

    def resolve(self, name: str, version: str) -> Route:
        """The route of ``name`` at ``version`` ("" = latest).

        Raises:
            RouteError: NOT_FOUND for an unknown model or version, listing what is known.
        """
        if not name and len(self._latest) == 1:
            name = next(iter(self._latest))  # OIP allows "" when a server has one model
        route = self._by_key.get((name, version)) if version else self._latest.get(name)
        if route is None:
            known = ", ".join(r.key for r in self._by_key.values()) or "none"
            what = f"model {name!r}" + (f" version {version!r}" if version else "")
            raise RouteError(grpc.StatusCode.NOT_FOUND, f"unknown {what}; this gateway serves"
                             f" {known}")
        return route

    def by_service(self, service: str) -> Route | None:
        return self._by_service.get(service)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def peek_model(data: bytes) -> tuple[str, str]:
    """Fields 1 and 2 (model name and version) of a serialized OIP request, nothing else.

    Scans the top-level fields only, skipping the others by their length, so the tensors are
    never decoded. A repeated field takes its last value, as protobuf parsers do.

    Raises:
        ValueError: the bytes are not a protobuf message.
    """
    found = ["", ""]
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 2:
                length, pos = _varint(data, pos)
                if field in (1, 2):
                    found[field - 1] = data[pos:pos + length].decode("utf-8")
                pos += length
            elif wire == 0:
                _, pos = _varint(data, pos)
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if pos != end:
        raise ValueError("truncated message")
    return found[0], found[1]


class Upstream:
    """A channel to one model server, with one raw-bytes callable per method."""

    def __init__(self, target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.enable_retries", 0),
        ])
        self._calls: dict[str, grpc.UnaryUnaryMultiCallable] = {}

    def call(self, method: str) -> grpc.UnaryUnaryMultiCallable:
        """The callable of ``method`` (``/package.Service/Method``): bytes in, bytes out."""
        found = self._calls.get(method)
        if found is None:
            found = self._calls[method] = self.channel.unary_unary(method)
        return found

    def close(self) -> None:
        self.channel.close()


class Backend(Protocol):
    """Where the models run. Called from many threads at once."""

    def open(self, route: Route) -> Upstream:
        """The model's server, started first if need be; one call per request.

        Raises:
            RouteError: UNAVAILABLE (with the reason) if the model cannot be started.
        """
        ...

    def close(self, route: Route) -> None:
        """The request that called :meth:`open` is over (whatever its outcome)."""
        ...

    def lost(self, route: Route) -> bool:
        """The model's server was unreachable; True if it has died and a retry would restart it.
        """
        ...

    def ready(self) -> bool:
        """Whether requests can be served now (the gateway's readiness)."""
        ...

    def shutdown(self) -> None:
        """Release everything; the gateway has stopped serving."""
        ...


class Front(Protocol):
    """A proxy that listens in the gateway's place and passes calls on to it (the host-side
    ``pymlc gateway`` puts HAProxy there, which sends most calls straight to the models)."""

    def start(self) -> list[str]:
        """Listen and start passing calls on.

        Returns:
            The addresses listened on.

        Raises:
            OSError: it could not start (the message says why and what to change).
        """
        ...

    def stop(self, grace: float) -> None:
        """Stop taking calls; let in-flight calls finish within ``grace`` s, then exit."""
        ...


class StaticBackend:
    """Model servers that run by themselves (e.g. beside the gateway in one pod).

    Readiness is polled: the gateway is ready while every model answers its health check.
    """

    def __init__(self, routes: Iterable[Route], *, interval: float = 2.0) -> None:
        self._upstreams = {r.key: Upstream(r.target, r.max_message_bytes) for r in routes}
        self._healthy = {key: False for key in self._upstreams}
        self._interval = interval
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="pymlc-gateway-health",
                                        daemon=True)
        self._poller.start()

    def open(self, route: Route) -> Upstream:
        return self._upstreams[route.key]

    def close(self, route: Route) -> None:
        pass

    def lost(self, route: Route) -> bool:
        self._healthy[route.key] = False
        return False

    def ready(self) -> bool:
        return all(self._healthy.values())

    def shutdown(self) -> None:
        self._stop.set()
        for upstream in self._upstreams.values():
            upstream.close()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for key, upstream in self._upstreams.items():
                self._healthy[key] = check_health(upstream.channel)
            self._stop.wait(self._interval if self.ready() else min(self._interval, 0.2))


def check_health(channel: grpc.Channel, timeout: float = 2.0) -> bool:
    """Whether the server behind ``channel`` answers grpc.health.v1 SERVING."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=timeout)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


_Behavior = Callable[[bytes, grpc.ServicerContext], bytes]


class Gateway:
    """The gateway's gRPC server (and its generic RPC handler: see :meth:`service`).

    Args:
        routes: every model version it serves.
        backend: where they run.
        threads: request threads; each waits on its model for the length of a call.
    """

    def __init__(self, routes: Iterable[Route], backend: Backend, *, threads: int = 16) -> None:
        self.table = RouteTable(routes)
        self.backend = backend
        self.threads = threads
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._methods = self._method_table()
        self._stop = threading.Event()
        self.addresses: list[str] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, *, socket: str | None = None, port: int | None = None,
              host: str = "127.0.0.1") -> list[str]:
        """Listen on a Unix socket and/or a TCP port (0 = any free) and start serving.

        Returns:
            The addresses listened on.

        Raises:
            OSError: an address cannot be bound.
        """
        limit = max([r.max_message_bytes for r in self.table.routes],
                    default=DEFAULT_MAX_MESSAGE_BYTES)
        server = grpc.server(futures.ThreadPoolExecutor(self.threads, "pymlc-gateway"),
                             options=[("grpc.max_receive_message_length", limit),
                                      ("grpc.max_send_message_length", limit),
                                      ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([self])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [OIP_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        self.addresses = _bind(server, socket, port, host)
        server.start()
        self._server = server
        for name in (LIVENESS_SERVICE, OIP_SERVICE):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        threading.Thread(target=self._track_readiness, name="pymlc-gateway-ready",
                         daemon=True).start()
        return self.addresses

    def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight calls finish within ``grace`` s, then shut down the
        backend (which stops whatever it started)."""
        self._stop.set()
        self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait()
        self.backend.shutdown()

    def _track_readiness(self) -> None:
        serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                                health_pb2.HealthCheckResponse.NOT_SERVING)
        while not self._stop.is_set():
            self._health.set("", serving if self.backend.ready() else not_serving)
            self._stop.wait(0.5)

    # --- dispatch ------------------------------------------------------------------------

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        """The handler of a call's method; None (UNIMPLEMENTED) for one nobody serves."""
        method: str = handler_call_details.method
        handler = self._methods.get(method)
        if handler is not None:
            return handler
        route = self.table.by_service(method[1:].rpartition("/")[0])
        if route is None:
            return None  # UNIMPLEMENTED
        return grpc.unary_unary_rpc_method_handler(self._typed(route, method))

    def _method_table(self) -> dict[str, grpc.RpcMethodHandler]:
        # Imported here, not at the top: the compiler imports this module for its constants,
        # and a process may hold only one copy of the `inference` protos (tritonclient's too).
        from .proto import grpc_predict_v2_pb2 as oip_pb

        local: dict[str, tuple[Callable[[grpc.ServicerContext], Any], Any]] = {
            "ServerLive": (lambda _c: oip_pb.ServerLiveResponse(live=True),
                           oip_pb.ServerLiveRequest),
            "ServerReady": (lambda _c: oip_pb.ServerReadyResponse(ready=self.backend.ready()),
                            oip_pb.ServerReadyRequest),
            "ServerMetadata": (lambda _c: self._server_metadata(), oip_pb.ServerMetadataRequest),
        }
        methods = {f"/{OIP_SERVICE}/{name}": grpc.unary_unary_rpc_method_handler(
            lambda _request, context, fn=fn: fn(context),
            request_deserializer=message.FromString, response_serializer=_serialize)
            for name, (fn, message) in local.items()}
        for name in ROUTED_METHODS:
            path = f"/{OIP_SERVICE}/{name}"
            methods[path] = grpc.unary_unary_rpc_method_handler(self._routed(path))
        return methods

    def _server_metadata(self) -> Any:
        from .proto import grpc_predict_v2_pb2 as oip_pb

        models = [f"model:{r.key}" for r in self.table.routes]
        return oip_pb.ServerMetadataResponse(name="pymlc-gateway", version=_runtime_version(),
                                             extensions=models)

    def _routed(self, method: str) -> _Behavior:
        def behavior(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                name, version = peek_model(request)
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"request is not a valid OIP message: {exc}")
            return self._forward(self._resolve(name, version, context), method, request, context)

        return behavior

    def _typed(self, route: Route, method: str) -> _Behavior:
        def behavior(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self._forward(route, method, request, context)

        return behavior

    def _resolve(self, name: str, version: str, context: grpc.ServicerContext) -> Route:
        try:
            return self.table.resolve(name, version)
        except RouteError as exc:
            context.abort(exc.code, str(exc))
            raise  # pragma: no cover - abort raises

    def _forward(self, route: Route, method: str, request: bytes,
                 context: grpc.ServicerContext) -> bytes:
        metadata = _forwardable(context.invocation_metadata())
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None and remaining < _NO_DEADLINE else None
        for attempt in (1, 2):
            try:
                upstream = self.backend.open(route)
            except RouteError as exc:
                log.warning("%s %s: %s", route.key, exc.code.name, exc)
                context.abort(exc.code, str(exc)[:_MAX_DETAILS])
            try:
                reply: bytes = upstream.call(method)(request, timeout=timeout, metadata=metadata)
                return reply
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if attempt == 1 and code is grpc.StatusCode.UNAVAILABLE \
                        and self.backend.lost(route):
                    log.warning("%s: model server lost (%s); restarting it", route.key, details)
                    continue
                context.abort(code, details[:_MAX_DETAILS])
            finally:
                self.backend.close(route)
        raise AssertionError("unreachable")  # pragma: no cover


def _forwardable(metadata: Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in metadata or () if k not in _HOP_BY_HOP
                 and not k.startswith(":"))


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _bind(server: grpc.Server, socket: str | None, port: int | None, host: str) -> list[str]:
    addresses = []
    if socket:
        if not server.add_insecure_port(f"unix:{socket}"):
            raise OSError(f"cannot listen on unix:{socket}")
        addresses.append(f"unix:{socket}")
    if port is not None:
        bound = server.add_insecure_port(tcp_address(host, port))
        if not bound:
            raise OSError(f"cannot listen on {tcp_address(host, port)}")
        addresses.append(tcp_address(host, bound))
    return addresses


def _runtime_version() -> str:
    try:
        return dist_metadata.version("pymlc")
    except dist_metadata.PackageNotFoundError:  # copied into an image without its metadata
        return "unknown"


# --- command line --------------------------------------------------------------------------

_ROUTE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)(?:@(?P<version>[^=\s]+))?=(?P<target>\S+)$")


def parse_route(text: str, services: dict[str, str] | None = None) -> Route:
    """``NAME[@VERSION]=TARGET`` (VERSION defaults to ``0``), e.g.
    ``fare-estimator@1.4.0=unix:/run/pyml/model.sock``.

    Args:
        text: the route.
        services: typed service name -> ``NAME[@VERSION]`` it belongs to.

    Raises:
        ValueError: not of that form.
    """
    found = _ROUTE.match(text)
    if not found:
        raise ValueError(f"bad route {text!r}: expected NAME[@VERSION]=unix:PATH or"
                         " NAME[@VERSION]=HOST:PORT")
    name, version = found["name"], found["version"] or "0"
    owned = [svc for svc, model in (services or {}).items()
             if model in (name, f"{name}@{version}")]
    return Route(name, version, found["target"], owned[0] if owned else "")


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
        gateway = Gateway(routes, StaticBackend(routes), threads=args.threads)
    except ValueError as exc:
        print(f"pymlc gateway: error: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(gateway, socket=args.socket, port=args.port, host=args.host,
                                 grace=args.grace)


def serve_until_signalled(gateway: Gateway, *, socket: str | None, port: int | None,
                          host: str, grace: float, front: Front | None = None) -> int:
    """Start ``gateway``, print a ready line on stderr, and stop it on SIGTERM or SIGINT.

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
        gateway.backend.shutdown()
        return 1
    if front is not None:
        try:
            addresses = front.start()
        except OSError as exc:
            print(f"pymlc gateway: error: {exc}", file=sys.stderr)
            gateway.stop(0)
            return 1
    models = ", ".join(r.key for r in gateway.table.routes)
    print(f"pymlc: gateway serving {models} on {', '.join(addresses)}", file=sys.stderr,
          flush=True)
    stop.wait()
    print("pymlc: gateway stopping; finishing in-flight calls", file=sys.stderr, flush=True)
    deadline = time.monotonic() + grace
    if front is not None:  # first: its in-flight calls may still need the gateway
        front.stop(grace)
    gateway.stop(max(0.0, deadline - time.monotonic()))
    print("pymlc: gateway stopped", file=sys.stderr, flush=True)
    return 0


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
    p.add_argument("--threads", type=int, default=16, help="request threads (default: 16)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds in-flight calls may take after SIGTERM (default: 10)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


if __name__ == "__main__":
    sys.exit(main())
