"""The gateway's gRPC server: :class:`Gateway`, on an asyncio event loop in a thread of its own.

A call waiting for its request's bytes holds no thread, so health checks and other calls are
answered whatever stalled streams do; the backend's blocking work (starting a container) runs
on a thread pool. See :mod:`.gateway` for what it serves and how it answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent import futures
from importlib import metadata as dist_metadata
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from .config import tcp_address
from .gateway_backend import Backend, Upstream, UpstreamClosedError
from .gateway_reflection import GatewayReflection, ask_once
from .gateway_routes import DEFAULT_MAX_MESSAGE_BYTES, Route, RouteError, RouteTable, peek_model
from .grpc_options import server_options

__all__ = ["LIVENESS_SERVICE", "OIP_SERVICE", "ROUTED_METHODS", "Front", "Gateway"]

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
# grpc reports "no deadline" as ~9.2e18 seconds remaining; passed on, that would overflow.
_NO_DEADLINE = 1e9
# A model server's failures worth one retry on a fresh server: refused or broken connections,
# and calls cut by the backend closing the channel of a container it is replacing.
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_REFLECTION_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0  # beyond the grace, for the loop's own work at shutdown

T = TypeVar("T")
_Behavior = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


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


class Gateway:
    """The gateway's gRPC server (and its generic RPC handler: see :meth:`service`).

    Args:
        routes: every model version it serves.
        backend: where they run.
        threads: threads for the backend's blocking work (starting a model's container);
            calls themselves hold no thread.
    """

    def __init__(self, routes: Sequence[Route], backend: Backend, *, threads: int = 16) -> None:
        self.table = RouteTable(routes)
        self.backend = backend
        self.threads = threads
        self.addresses: list[str] = []
        self._pool = futures.ThreadPoolExecutor(threads, "pymlc-gateway")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None  # grpc_health's asyncio servicer
        self._readiness: asyncio.Task[None] | None = None
        self._methods = self._method_table()
        self._hidden = _host_paths(self.table.routes)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, *, socket: str | None = None, port: int | None = None,
              host: str = "127.0.0.1") -> list[str]:
        """Listen on a Unix socket and/or a TCP port (0 = any free) and start serving.

        Returns:
            The addresses listened on.

        Raises:
            OSError: an address cannot be bound.
        """
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="pymlc-gateway-loop",
                                        daemon=True)
        self._thread.start()
        try:
            self.addresses = self._on_loop(self._start(socket, port, host))
        except BaseException:
            self._close_loop()
            raise
        return self.addresses

    def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight calls finish within ``grace`` s, then shut down the
        backend (which stops whatever it started)."""
        if self._loop is not None and self._server is not None:
            self._on_loop(self._stop(grace), timeout=grace + _STOP_TIMEOUT)
        self.backend.shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._close_loop()

    async def _start(self, socket: str | None, port: int | None, host: str) -> list[str]:
        limit = max([r.max_message_bytes for r in self.table.routes],
                    default=DEFAULT_MAX_MESSAGE_BYTES)
        server = grpc.aio.server(options=server_options(limit))
        server.add_generic_rpc_handlers([self])
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        own = [OIP_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            GatewayReflection(own, self.table, self._ask_reflection), server)
        addresses = _bind(server, socket, port, host)
        await server.start()
        self._server = server
        for name in (LIVENESS_SERVICE, OIP_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await self._set_readiness()
        self._readiness = asyncio.get_running_loop().create_task(self._track_readiness())
        return addresses

    async def _stop(self, grace: float) -> None:
        assert self._server is not None and self._health is not None
        if self._readiness is not None:
            self._readiness.cancel()
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def _track_readiness(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self._set_readiness()

    async def _set_readiness(self) -> None:
        assert self._health is not None
        serving, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                                health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.set("", serving if self.backend.ready() else not_serving)

    def _on_loop(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if loop.is_running():  # let the channels closed at shutdown finish closing
            asyncio.run_coroutine_threadsafe(_settle(), loop).result(_STOP_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT)
        if not loop.is_running():
            loop.close()

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

        local: dict[str, tuple[Callable[[], Any], Any]] = {
            "ServerLive": (lambda: oip_pb.ServerLiveResponse(live=True),
                           oip_pb.ServerLiveRequest),
            "ServerReady": (lambda: oip_pb.ServerReadyResponse(ready=self.backend.ready()),
                            oip_pb.ServerReadyRequest),
            "ServerMetadata": (self._server_metadata, oip_pb.ServerMetadataRequest),
        }
        methods = {f"/{OIP_SERVICE}/{name}": grpc.unary_unary_rpc_method_handler(
            _answering(fn), request_deserializer=message.FromString,
            response_serializer=_serialize) for name, (fn, message) in local.items()}
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
        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                name, version = peek_model(request)
                route = self.table.resolve(name, version)
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"request is not a valid OIP message: {exc}")
            except RouteError as exc:
                await context.abort(exc.code, str(exc))
            return await self._forward(route, method, request, context)

        return behavior

    def _typed(self, route: Route, method: str) -> _Behavior:
        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._forward(route, method, request, context)

        return behavior

    # --- forwarding ----------------------------------------------------------------------

    async def _forward(self, route: Route, method: str, request: bytes,
                       context: grpc.aio.ServicerContext) -> bytes:
        metadata = _forwardable(context.invocation_metadata())
        for attempt in (1, 2):
            try:
                upstream = await self._open(route)
            except RouteError as exc:
                log.warning("%s %s: %s", route.key, exc.code.name, exc)
                await context.abort(exc.code, self._hide(str(exc)))
            try:
                reply: bytes = await upstream.call(method)(
                    request, timeout=_timeout(context), metadata=metadata)
                return reply
            except (grpc.RpcError, UpstreamClosedError) as exc:
                code, details = _status(exc)
                if attempt == 1 and code in _RETRYABLE and await self._lost(route, upstream):
                    log.warning("%s: call %s (%s); retrying it once", route.key,
                                code.name, self._hide(details))
                    continue
                if code in _RETRYABLE:
                    code, details = grpc.StatusCode.UNAVAILABLE, (
                        f"model {route.key} is unavailable: {details or code.name}")
                await context.abort(code, self._hide(details))
            finally:
                self.backend.close(route)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _open(self, route: Route) -> Upstream:
        """The route's server: at once when the backend has it, else from a pool thread."""
        upstream = self.backend.try_open(route)
        if upstream is not None:
            return upstream
        return await self._in_pool(self.backend.open, route,
                                   undo=lambda: self.backend.close(route))

    async def _lost(self, route: Route, upstream: Upstream) -> bool:
        return await self._in_pool(self.backend.lost, route, upstream)

    async def _in_pool(self, fn: Callable[..., T], *args: Any,
                       undo: Callable[[], None] | None = None) -> T:
        """``fn(*args)`` on the pool; if the call is cancelled meanwhile, ``undo`` runs once
        ``fn`` has returned (an open then balanced by its close)."""
        done = asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if undo is not None:
                done.add_done_callback(lambda f: None if f.cancelled() or f.exception()
                                       else undo())
            raise

    async def _ask_reflection(self, route: Route, request: Any) -> Any:
        try:
            upstream = await self._open(route)
        except RouteError as exc:
            log.warning("%s: reflection: %s", route.key, exc)
            return None
        try:
            return await ask_once(upstream.channel(), request, _REFLECTION_TIMEOUT)
        except UpstreamClosedError:
            return None
        finally:
            self.backend.close(route)

    def _hide(self, details: str) -> str:
        """``details`` without the model servers' addresses (host paths), cut short."""
        for needle, label in self._hidden:
            details = details.replace(needle, label)
        return details[:_MAX_DETAILS]


def _host_paths(routes: Sequence[Route]) -> list[tuple[str, str]]:
    """(text, replacement) for every form of each model server's address, longest first."""
    found = {}
    for route in routes:
        label = f"<the server of {route.key}>"
        found[route.target] = label
        found[route.target.removeprefix("unix:")] = label
    return sorted(found.items(), key=lambda item: -len(item[0]))


def _answering(fn: Callable[[], Any]) -> Callable[[Any, grpc.aio.ServicerContext],
                                                  Awaitable[Any]]:
    async def behavior(_request: Any, _context: grpc.aio.ServicerContext) -> Any:
        return fn()

    return behavior


def _status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, grpc.RpcError):
        call: Any = exc
        return call.code(), call.details() or ""
    return grpc.StatusCode.UNAVAILABLE, "its container is being replaced"


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < _NO_DEADLINE else None


async def _settle() -> None:
    """Wait for the loop's other tasks (channels closing) to finish."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current]
    if pending:
        await asyncio.wait(pending, timeout=5)


def _forwardable(metadata: Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in metadata or () if k not in _HOP_BY_HOP
                 and not k.startswith(":"))


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _bind(server: grpc.aio.Server, socket: str | None, port: int | None,
          host: str) -> list[str]:
    addresses = []
    if socket:
        _listen(server, f"unix:{socket}")
        addresses.append(f"unix:{socket}")
    if port is not None:
        bound = _listen(server, tcp_address(host, port))
        addresses.append(tcp_address(host, bound))
    return addresses


def _listen(server: grpc.aio.Server, address: str) -> int:
    try:
        bound = int(server.add_insecure_port(address))
    except RuntimeError:  # newer grpc raises where older ones returned 0
        bound = 0
    if not bound:
        raise OSError(f"cannot listen on {address}")
    return bound


def _runtime_version() -> str:
    try:
        return dist_metadata.version("pymlc")
    except dist_metadata.PackageNotFoundError:  # copied into an image without its metadata
        return "unknown"
