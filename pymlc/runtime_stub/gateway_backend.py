"""Where the gateway's models run: the :class:`Backend` protocol, the channel to one model
server (:class:`Upstream`), and :class:`StaticBackend` for servers that run by themselves (the
Kubernetes pod form). The host-side ``pymlc gateway`` plugs in a backend that starts model
containers on demand (``pymlc.gateway.launcher``).

The gateway serves on an asyncio event loop, so that a call waiting for its request's bytes
holds no thread; a backend's blocking work (starting a container) runs on a thread pool.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .gateway_routes import DEFAULT_MAX_MESSAGE_BYTES, Route

__all__ = ["FRESH_CHANNEL", "Backend", "StaticBackend", "Upstream", "UpstreamClosedError",
           "check_health"]

# A model server on a local socket comes back within seconds (a restarted container, a pod's
# model container restarted by the kubelet): grpc's default reconnect backoff (up to 120 s)
# would leave its calls failing long after it is back. And each channel gets subchannels of its
# own: grpc shares them between channels of one target by default, so a fresh channel to a
# restarted server would inherit the old one's failed connection and its backoff.
_RECONNECT = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
              "grpc.max_reconnect_backoff_ms": 1000, "grpc.use_local_subchannel_pool": 1}


# Channel arguments for a channel that must not inherit another's connection state.
FRESH_CHANNEL = list(_RECONNECT.items())


class UpstreamClosedError(ConnectionError):
    """The channel was closed (its container is being replaced) before a call could use it."""


class Upstream:
    """A channel to one model server, with one raw-bytes callable per method.

    The channel (``grpc.aio``) is opened on the gateway's event loop at the first call;
    :meth:`close` may be called from any thread.
    """

    def __init__(self, target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.target = target
        self.max_message_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def call(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """The callable of ``method`` (``/package.Service/Method``): bytes in, bytes out. On the
        event loop only.

        Raises:
            UpstreamClosedError: the channel was closed.
        """
        found = self._calls.get(method)
        if found is None or self._closed:  # closed: channel() says so
            found = self._calls[method] = self.channel().unary_unary(method)
        return found

    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on the running event loop at the first call.

        Raises:
            UpstreamClosedError: the channel was closed.
        """
        with self._lock:
            if self._closed:
                raise UpstreamClosedError(f"the channel to {self.target} is closed")
            if self._channel is None:
                self._loop = asyncio.get_running_loop()
                self._channel = grpc.aio.insecure_channel(self.target, options=[
                    ("grpc.max_receive_message_length", self.max_message_bytes),
                    ("grpc.max_send_message_length", self.max_message_bytes),
                    ("grpc.enable_retries", 0), *_RECONNECT.items()])
            return self._channel

    def close(self) -> None:
        """Close the channel (its calls end CANCELLED); from any thread."""
        with self._lock:
            self._closed = True
            channel, loop, self._channel = self._channel, self._loop, None
        if channel is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(channel.close())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(channel.close(), loop)


class Backend(Protocol):
    """Where the models run. Called from the event loop and from pool threads at once."""

    def try_open(self, route: Route) -> Upstream | None:
        """The model's server if it can be had at once, without blocking; else None (then the
        gateway calls :meth:`open` on a pool thread). Counts as :meth:`open` when not None."""
        ...

    def open(self, route: Route) -> Upstream:
        """The model's server, started first if need be; one call per request. May block.

        Raises:
            RouteError: UNAVAILABLE (with the reason) if the model cannot be started.
        """
        ...

    def close(self, route: Route) -> None:
        """The request that opened the route is over (whatever its outcome). Never blocks."""
        ...

    def lost(self, route: Route, upstream: Upstream) -> bool:
        """A call to ``upstream`` was refused or broken. True if the call is worth one retry
        (the next :meth:`open` gives a fresh or a checked server). May block."""
        ...

    def ready(self) -> bool:
        """Whether requests can be served now (the gateway's readiness). Never blocks."""
        ...

    def shutdown(self) -> None:
        """Release everything; the gateway has stopped serving."""
        ...


class StaticBackend:
    """Model servers that run by themselves (e.g. beside the gateway in one pod).

    Readiness is polled: the gateway is ready while every model answers its health check.
    A broken call is not retried: nobody here can give the model a fresh server.
    """

    def __init__(self, routes: Iterable[Route], *, interval: float = 2.0) -> None:
        routes = list(routes)
        self._upstreams = {r.key: Upstream(r.target, r.max_message_bytes) for r in routes}
        self._probes = {r.key: grpc.insecure_channel(r.target, options=FRESH_CHANNEL)
                        for r in routes}
        self._healthy = {key: False for key in self._upstreams}
        self._interval = interval
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="pymlc-gateway-health",
                                        daemon=True)
        self._poller.start()

    def try_open(self, route: Route) -> Upstream:
        return self._upstreams[route.key]

    def open(self, route: Route) -> Upstream:
        return self._upstreams[route.key]

    def close(self, route: Route) -> None:
        pass

    def lost(self, route: Route, upstream: Upstream) -> bool:
        self._healthy[route.key] = False
        return False

    def ready(self) -> bool:
        return all(self._healthy.values())

    def shutdown(self) -> None:
        self._stop.set()
        self._poller.join(timeout=10)
        for upstream in self._upstreams.values():
            upstream.close()
        for probe in self._probes.values():
            probe.close()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for key, probe in self._probes.items():
                self._healthy[key] = check_health(probe)
            self._stop.wait(self._interval if self.ready() else min(self._interval, 0.2))


def check_health(channel: grpc.Channel, timeout: float = 2.0) -> bool:
    """Whether the server behind ``channel`` (a blocking channel) answers grpc.health.v1
    SERVING."""
    try:
        reply: Any = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
