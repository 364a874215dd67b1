"""The Docker backend of ``pymlc gateway``: each model's serving image as a container, started
on demand, reached over a Unix socket in a bind-mounted host folder.

Every container runs with no network (``--network none``), a read-only root with a tmpfs
``/tmp``, no capabilities, no privilege escalation, and the spec's CPU and memory limits. It is
labelled ``pymlc.gateway=<instance>``, so shutdown removes exactly this gateway's containers,
including any a crash left behind; a gateway killed before it could clean up is cleaned up after
by the next one (see :mod:`.orphans`). A model is routed to only once its server answers
grpc.health.v1 SERVING on the socket. A container found dead is removed and started again (on
the next request, or at once with ``start="eager"``); one idle past ``idle_timeout`` is stopped.

A call that a model's server refused or broke is worth one retry (predictions are pure): the
launcher makes sure the retry meets a server that answers, starting a fresh container if the
old one is dead or does not answer its health check. A container that fails to start is not
started again for every request: after each failed start in a row the model waits
``BACKOFF_FIRST`` s, doubling up to ``BACKOFF_MAX`` s, and requests meanwhile get UNAVAILABLE
with the failure (the end of the container's log); a start that answers its health check resets
the count.

With a fast path (HAProxy, see :mod:`.haproxy`), a model's calls bypass this process while its
container serves: the launcher enables the model's server there once the container answers its
health check and disables it before the container is stopped or removed, and idle time counts
the calls the fast path reports too.

Deaths are learnt from the engine's ``die`` events, not by polling: an inspect call per model
every second cost the request path measurable time (the Docker SDK's HTTP round trip and JSON
parsing hold the GIL). The engine is asked directly only when a call fails with UNAVAILABLE, and
every ``POLL_EVERY`` seconds while it refuses the event stream.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from ..image.hardening import model_container_options
from ..runtime_stub.gateway import Route, RouteError, Upstream, check_health
from ..runtime_stub.gateway_backend import FRESH_CHANNEL
from .haproxy_config import ModelServer
from .orphans import reap_orphans, write_owner

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "DEFAULT_SOCKET", "LABEL", "FastPath", "Launcher",
           "MissingImageError", "ModelImage", "SOCKET_PATH_MAX", "Usage", "backoff_delay"]

log = logging.getLogger("pymlc.gateway")

LABEL = "pymlc.gateway"
DEFAULT_SOCKET = "/run/pyml/model.sock"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, with the terminating NUL
_LOG_TAIL = 15
POLL_EVERY = 5.0  # seconds between inspections when the engine gives no event stream
BACKOFF_FIRST = 1.0  # seconds a model waits after a failed start, doubled after each one
BACKOFF_MAX = 60.0


@dataclass(frozen=True)
class ModelImage:
    """One model as the routes file describes it."""

    name: str
    version: str
    image: str
    socket: str
    service: str
    cpus: float
    memory_mb: int
    max_message_bytes: int
    spec: Path | None = None


@dataclass(frozen=True)
class Usage:
    """A model server's traffic through a fast path: calls in flight (running or queued for
    it), seconds since the last one began (None: never)."""

    in_flight: int
    idle: float | None


class FastPath(Protocol):
    """A data path that reaches model servers without this process (HAProxy)."""

    def enable(self, route: Route) -> None:
        """Send the model's calls straight to its server (which answers health checks)."""
        ...

    def disable(self, route: Route) -> None:
        """Send the model's calls to the gateway again (its container is about to stop)."""
        ...

    def usage(self) -> dict[str, Usage]:
        """Each model server's traffic on the fast path, by route key."""
        ...


class MissingImageError(RouteError):
    """A model's image is not in the engine (UNAVAILABLE, saying how to build it)."""


@dataclass
class _Slot:
    """The running state of one model: its container, channel and use."""

    model: ModelImage
    route: Route
    folder: Path
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while (re)starting
    counting: threading.Lock = field(default_factory=threading.Lock)  # inflight, last_used
    container: Any = None
    upstream: Upstream | None = None
    inflight: int = 0
    last_used: float = 0.0
    starts: int = 0
    died: str = ""  # id of a container the engine reported dead (checked against `container`)
    failures: int = 0  # failed starts in a row
    retry_at: float = 0.0  # no start before this (monotonic clock)
    failure: str = ""  # why the last start failed


class Launcher:
    """Starts, watches and stops model containers; a :class:`~pymlc.runtime_stub.gateway.Backend`.

    Args:
        client: a ``docker.DockerClient``.
        models: the models to serve.
        instance: this gateway's id (container label and name part).
        state_dir: host folder for the sockets (one folder per model, created here).
        start_timeout: seconds a container may take to answer its health check.
        idle_timeout: stop a container unused this long (None: never).
        eager: restart a dead container at once, not on the next request.
        grace: seconds a stopping container may take to finish its calls.

    Attributes:
        fast_path: set before :meth:`start` to have HAProxy (or the like) reach the models.
    """

    def __init__(self, client: Any, models: Iterable[ModelImage], *, instance: str,
                 state_dir: Path, start_timeout: float = 120.0,
                 idle_timeout: float | None = None, eager: bool = False,
                 grace: float = 10.0) -> None:
        self.client = client
        self.instance = instance
        self.state_dir = state_dir
        self.start_timeout = start_timeout
        self.idle_timeout = idle_timeout
        self.eager = eager
        self.grace = grace
        self.fast_path: FastPath | None = None
        self._slots = {s.route.key: s for s in (self._slot(m) for m in models)}
        self._stop = threading.Event()
        self._wake = threading.Event()  # a death to act on: the watcher need not wait
        self._events: Any = None  # the engine's event stream, closed on shutdown
        self._watcher = threading.Thread(target=self._watch, name="pymlc-gateway-watch",
                                         daemon=True)
        self._follower = threading.Thread(target=self._follow, name="pymlc-gateway-events",
                                          daemon=True)

    def _slot(self, model: ModelImage) -> _Slot:
        folder = self.state_dir / f"{model.name}-{model.version}"
        socket = folder / posixpath.basename(model.socket or DEFAULT_SOCKET)
        if len(str(socket)) > SOCKET_PATH_MAX:
            raise ValueError(f"socket path {socket} is longer than {SOCKET_PATH_MAX} bytes;"
                             " choose a shorter --state-dir")
        route = Route(model.name, model.version, f"unix:{socket}", model.service,
                      model.max_message_bytes)
        return _Slot(model, route, folder)

    @property
    def routes(self) -> list[Route]:
        return [slot.route for slot in self._slots.values()]

    def servers(self) -> dict[str, ModelServer]:
        """Each model's server (its Unix socket on the host, its container's CPUs), by route
        key."""
        return {key: ModelServer(slot.route.target.removeprefix("unix:"), slot.model.cpus)
                for key, slot in self._slots.items()}

    def containers(self) -> list[Any]:
        """Every container of this gateway that the engine knows, running or not."""
        # ignore_removed: one removed between the engine's listing and its inspection (an
        # idle container stopping) is gone, not an error.
        return list(self.client.containers.list(all=True, ignore_removed=True,
                                                filters={"label": f"{LABEL}={self.instance}"}))

    # --- Backend -----------------------------------------------------------------------

    def start(self) -> None:
        """Remove what killed gateways left behind, then start watching containers (deaths,
        idle time); call once before serving."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_owner(self.state_dir)
        reap_orphans(self.client, LABEL, instance=self.instance,
                     state_root=self.state_dir.parent)
        self._events = self._subscribe()  # before any container starts: no death is missed
        self._follower.start()
        self._watcher.start()

    def start_all(self) -> None:
        """Start every model now (``--start eager``).

        Raises:
            RouteError: a model could not be started.
        """
        for slot in self._slots.values():
            with slot.lock:
                self._ensure(slot)

    def try_open(self, route: Route) -> Upstream | None:
        slot = self._slots[route.key]
        if not slot.lock.acquire(blocking=False):  # a start or a check in progress
            return None
        try:
            upstream = slot.upstream
            if upstream is not None:
                _count(slot, 1)
            return upstream
        finally:
            slot.lock.release()

    def open(self, route: Route) -> Upstream:
        slot = self._slots[route.key]
        with slot.lock:
            upstream = self._ensure(slot)
            _count(slot, 1)
        return upstream

    def close(self, route: Route) -> None:
        _count(self._slots[route.key], -1)

    def lost(self, route: Route, upstream: Upstream) -> bool:
        slot = self._slots[route.key]
        with slot.lock:
            if self._stop.is_set():
                return False
            if slot.upstream is not upstream:  # already replaced, by another call or the watcher
                return True
            if slot.container is not None and _running(slot.container) and _answers(slot):
                return True  # the server is well: only that connection broke
            reason = "gone" if slot.container is None else _exit_reason(slot.container)
            log.warning("%s: container %s died or does not answer (%s); replacing it",
                        route.key, getattr(slot.container, "short_id", "-"), reason)
            self._discard(slot)
            return True

    def ready(self) -> bool:
        return not self._stop.is_set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._events is not None:
            self._events.close()
        for thread in (self._watcher, self._follower):
            if thread.is_alive():
                thread.join(timeout=10)
        for slot in self._slots.values():
            with slot.lock:
                self._discard(slot, grace=self.grace)
        for container in self.containers():  # whatever a failed start or a race left behind
            _remove(container)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # --- starting ------------------------------------------------------------------------

    def _ensure(self, slot: _Slot) -> Upstream:
        """The slot's channel, starting its container first if none runs. Holds slot.lock."""
        if slot.upstream is None:
            if self._stop.is_set():
                raise RouteError(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down")
            self._launch(slot)
        assert slot.upstream is not None
        return slot.upstream

    def _launch(self, slot: _Slot) -> None:
        self._discard(slot)
        _check_backoff(slot)
        started = time.monotonic()
        try:
            slot.container = self._run(slot)
            slot.starts += 1
            self._wait_healthy(slot)
        except MissingImageError:  # no backoff: the image may be built any moment
            self._discard(slot)
            raise
        except RouteError as exc:
            self._discard(slot)
            _record_failure(slot, str(exc))
            raise
        slot.failures = 0
        slot.upstream = Upstream(slot.route.target, slot.model.max_message_bytes)
        slot.last_used = time.monotonic()
        if self.fast_path is not None:
            self.fast_path.enable(slot.route)
        log.info("%s: container %s serving after %.1f s", slot.route.key,
                 slot.container.short_id, time.monotonic() - started)

    def _run(self, slot: _Slot) -> Any:
        import docker

        model = slot.model
        image = self._image(model)
        self._prepare_folder(slot, image)
        socket = model.socket or DEFAULT_SOCKET
        try:
            return self.client.containers.run(
                model.image, ["--socket", socket], detach=True,
                name=f"pymlc-{self.instance}-{model.name}-{slot.starts + 1}",
                labels={LABEL: self.instance, "pymlc.model": model.name,
                        "pymlc.model.version": model.version},
                mounts=[docker.types.Mount(posixpath.dirname(socket), str(slot.folder),
                                           type="bind")],
                user=_container_user(image),
                **model_container_options(cpus=model.cpus, memory_mb=model.memory_mb))
        except docker.errors.DockerException as exc:
            raise RouteError(grpc.StatusCode.UNAVAILABLE, f"model {model.name} {model.version}:"
                             f" cannot start {model.image}: {_explain(exc)}") from exc

    def _image(self, model: ModelImage) -> Any:
        import docker

        try:
            return self.client.images.get(model.image)
        except docker.errors.ImageNotFound:
            hint = f"`pymlc image {model.spec}`" if model.spec else "`pymlc image SPEC`"
            raise MissingImageError(grpc.StatusCode.UNAVAILABLE,
                                    f"model {model.name} {model.version}: image {model.image}"
                                    f" is not in the local Docker engine; build it with {hint}"
                                    " (or start the gateway with --build)") from None
        except docker.errors.DockerException as exc:
            raise RouteError(grpc.StatusCode.UNAVAILABLE, f"model {model.name}"
                             f" {model.version}: Docker engine: {_explain(exc)}") from exc

    def _prepare_folder(self, slot: _Slot, image: Any) -> None:
        # The server in the container creates the socket: its user must own the folder, and
        # the gateway must be able to connect (a root gateway always can).
        slot.folder.mkdir(parents=True, exist_ok=True)
        for stale in slot.folder.iterdir():
            stale.unlink()
        owner = _numeric_user(image) if os.geteuid() == 0 else None
        if owner is not None:
            os.chown(slot.folder, *owner)
        os.chmod(slot.folder, 0o750 if owner or os.geteuid() != 0 else 0o777)

    def _wait_healthy(self, slot: _Slot) -> None:
        # A fresh channel per probe: one that failed to connect would wait out its backoff.
        deadline = time.monotonic() + self.start_timeout
        socket = Path(slot.route.target.removeprefix("unix:"))
        while time.monotonic() < deadline and not self._stop.is_set():
            if socket.exists():
                with grpc.insecure_channel(slot.route.target, options=FRESH_CHANNEL) as channel:
                    if check_health(channel, 1.0):
                        return
            if not _running(slot.container):
                raise RouteError(grpc.StatusCode.UNAVAILABLE, self._failed(slot))
            time.sleep(0.05)
        raise RouteError(grpc.StatusCode.UNAVAILABLE,
                         f"model {slot.route.key}: its server did not answer health checks"
                         f" within {self.start_timeout:.0f} s")

    def _failed(self, slot: _Slot) -> str:
        container = slot.container
        tail = container.logs(tail=_LOG_TAIL).decode(errors="replace").strip()
        return (f"model {slot.route.key}: container {container.short_id} exited at start"
                f" ({_exit_reason(container)}); last lines of its log:\n{tail}")

    # --- stopping ------------------------------------------------------------------------

    def _discard(self, slot: _Slot, *, grace: float = 0.0) -> None:
        """Close the channel and remove the container, if any. Holds slot.lock."""
        if slot.container is not None and self.fast_path is not None:
            self.fast_path.disable(slot.route)  # first: no new call may reach the container
        if slot.upstream is not None:
            slot.upstream.close()
            slot.upstream = None
        if slot.container is not None:
            _remove(slot.container, grace)
            slot.container = None

    # --- watching ------------------------------------------------------------------------

    def _subscribe(self) -> Any:
        """The engine's stream of ``die`` events of this gateway's containers; None if the
        engine refuses it (the follower then inspects the containers every ``POLL_EVERY`` s)."""
        import docker

        try:
            return self.client.events(decode=True, filters={
                "type": "container", "event": "die", "label": f"{LABEL}={self.instance}"})
        except docker.errors.DockerException as exc:
            log.warning("cannot follow the Docker engine's events (%s); polling instead",
                        _explain(exc))
            return None

    def _follow(self) -> None:
        """Mark the slot of each container the engine reports dead, and wake the watcher."""
        while not self._stop.is_set():
            stream = self._events
            if stream is not None:
                try:
                    for event in stream:
                        self._mark_dead(str(event.get("id", "")))
                except Exception:  # closed on shutdown, or the engine went away
                    pass
            if stream is None and self._stop.wait(POLL_EVERY):  # no stream: try again later
                return
            self._events = self._subscribe()
            if self._stop.is_set():  # shutdown may have closed the previous stream, not this one
                if self._events is not None:
                    self._events.close()
                return
            self._poll_deaths()  # whatever died while no stream was open

    def _poll_deaths(self) -> None:
        for slot in self._slots.values():
            container = slot.container
            try:
                if container is not None and not _running(container):
                    self._mark_dead(container.id)
            except Exception as exc:  # the engine is unreachable: the next round retries
                log.debug("cannot inspect a container: %s", exc)
                return

    def _mark_dead(self, container_id: str) -> None:
        for slot in self._slots.values():
            container = slot.container
            if container is not None and container.id == container_id:
                slot.died = container_id
                self._wake.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            usage = self._fast_usage()
            for slot in self._slots.values():
                if slot.lock.acquire(blocking=False):  # a start in progress is left alone
                    try:
                        self._check(slot, usage.get(slot.route.key))
                    finally:
                        slot.lock.release()
                elif slot.died:
                    self._wake.set()  # busy: look again on the next round

    def _fast_usage(self) -> dict[str, Usage]:
        """The fast path's traffic, asked only when an idle timeout needs it."""
        if self.idle_timeout is None or self.fast_path is None:
            return {}
        if not any(s.container is not None for s in self._slots.values()):
            return {}
        return self.fast_path.usage()

    def _check(self, slot: _Slot, fast: Usage | None = None) -> None:
        """Act on the slot's idle time or death; no engine call unless there is something to
        do. Holds slot.lock."""
        if slot.container is None:
            return
        idle = time.monotonic() - slot.last_used
        inflight = slot.inflight
        if fast is not None:  # calls that bypassed this process count too
            inflight += fast.in_flight
            idle = idle if fast.idle is None else min(idle, fast.idle)
        if self.idle_timeout is not None and inflight == 0 and idle > self.idle_timeout:
            log.info("%s: idle for %.0f s; stopping container %s", slot.route.key, idle,
                     slot.container.short_id)
            self._discard(slot, grace=self.grace)
        elif slot.died == slot.container.id:
            _running(slot.container)  # reloads its state, for the exit reason
            log.warning("%s: container %s died (%s); %s", slot.route.key,
                        slot.container.short_id, _exit_reason(slot.container),
                        "restarting it" if self.eager else "restarting on the next request")
            self._discard(slot)
            if self.eager:
                try:
                    self._launch(slot)
                except RouteError as exc:
                    log.error("%s: %s", slot.route.key, exc)


def backoff_delay(failures: int) -> float:
    """Seconds to wait before the next start after ``failures`` failed starts in a row."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


def _record_failure(slot: _Slot, reason: str) -> None:
    slot.failures += 1
    slot.failure = reason
    slot.retry_at = time.monotonic() + backoff_delay(slot.failures)


def _check_backoff(slot: _Slot) -> None:
    """Refuse to start the slot's container while it backs off from failed starts.

    Raises:
        RouteError: UNAVAILABLE with the last failure and the time of the next try.
    """
    wait = slot.retry_at - time.monotonic()
    if wait > 0:
        raise RouteError(grpc.StatusCode.UNAVAILABLE,
                         f"{slot.failure}\n(failed to start {slot.failures} time(s) in a row;"
                         f" next try in {wait:.1f} s)")


def _count(slot: _Slot, calls: int) -> None:
    with slot.counting:
        slot.inflight += calls
        slot.last_used = time.monotonic()


def _answers(slot: _Slot) -> bool:
    with grpc.insecure_channel(slot.route.target, options=FRESH_CHANNEL) as channel:
        return check_health(channel, 1.0)


def _running(container: Any) -> bool:
    import docker

    try:
        container.reload()
    except docker.errors.NotFound:
        return False
    return bool(container.status == "running")


def _exit_reason(container: Any) -> str:
    state = container.attrs.get("State", {})
    if state.get("OOMKilled"):
        return "out of memory: raise serving.memory_mb"
    return f"exit code {state.get('ExitCode', '?')}"


def _remove(container: Any, grace: float = 0.0) -> None:
    import docker

    try:
        if grace > 0 and _running(container):
            container.stop(timeout=int(grace))  # SIGTERM: the server drains its calls
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def _container_user(image: Any) -> str | None:
    # A root gateway keeps the image's own (non-root) user; any other gateway runs the model
    # as itself, so that it can connect to the socket the model creates.
    if os.geteuid() == 0:
        return None
    return f"{os.geteuid()}:{os.getegid()}"


def _numeric_user(image: Any) -> tuple[int, int] | None:
    user = str(image.attrs.get("Config", {}).get("User") or "")
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None
    return int(uid), int(gid) if gid.isdigit() else int(uid)


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)
