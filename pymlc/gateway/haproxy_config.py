"""The HAProxy configuration of ``pymlc gateway``'s data path, from its routes (pure).

HAProxy listens where the user asked. An OIP ``ModelInfer`` whose message starts with a model's
name (and version) goes straight to that model's backend, as does a call of a model's typed
service; everything else goes to the Python gateway, which routes any well-formed request (by
``peek_model``) and words every error. Matching is on exact bytes after the 5-byte gRPC prefix
(compressed flag 0, length): field 1's tag ``0x0a``, its length as a varint, the name, then
for a named version field 2 (``0x12``, length, version). Every protobuf encoder writes fields in
number order, so this is the common case; a compressed message, another field order, an empty
name or an unknown model simply falls through to the Python gateway.

Only a request whose whole message HAProxy holds (it fits the 16 kB buffer; HAProxy waits for
it) goes straight to a model: a client that sends half a message and stops must not hold one of
the model server's few turns (see below) for as long as it likes, and only a request held whole
can be sent again when a dying container breaks it (``retry-on``). Larger requests, and
everything HAProxy cannot tell, go through the Python gateway, which receives a whole message
before it passes it on and holds no thread while it waits.

"Latest" is a name followed by anything but field 2 (or by the message's end): proto3 does not
write an empty version. Each model backend's server starts disabled, with the Python gateway as
its backup: the launcher enables it through HAProxy's runtime API once the container answers its
health check, and disables it before the container stops. A call its server refuses or breaks
(a container killed mid-call) is sent again, to the Python gateway once the server is marked
down, which restarts the container.

HAProxy hands a model's server one call per CPU of its container at a time (``maxconn``) and
queues the rest in arrival order: a Python server given more CPU-bound calls than it has CPUs
only slows them all down (measured in bench/README.md, "gateway"). A queued call waits as long
as its client's deadline allows; a server going down sends its queue to the Python gateway.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..compiler.emit.base import HEADER, render
from ..runtime_stub.gateway import OIP_SERVICE, Route, RouteTable

__all__ = ["FAST_METHODS", "GRPC_PREFIX", "MODEL_SERVER", "PYTHON", "Backend", "ModelServer",
           "Rule", "backend_name", "bind_address", "calls_at_once", "field", "render_config",
           "varint"]

GRPC_PREFIX = 5  # compressed flag (1 byte) + message length (4 bytes)
# The OIP calls HAProxy routes by their first bytes: the data. ModelReady and ModelMetadata go to
# the Python gateway, which checks every message it routes (a model server may answer a
# malformed one less clearly), at no cost that matters for calls that rare.
FAST_METHODS = ("ModelInfer",)
MODEL_SERVER = "model"  # the model's server in its backend (the launcher enables it)
PYTHON = "python"  # the Python gateway: the default backend, and each model's backup server
NAME_FIELD, VERSION_FIELD = 1, 2
# Calls HAProxy sends at once to the Python gateway for one model: a bound it never reaches in
# practice, set so that a call ending there pulls the next call waiting for that model.
PYTHON_CALLS = 1000
# How long HAProxy waits for a forwarded call's whole message (or a full buffer) before it
# routes it; a client that has not sent it by then goes to the Python gateway.
BODY_WAIT = "60s"
# Not the proxy's business: a deadline (also for a call queued for its model) is the gRPC
# client's; an idle connection is kept.
TIMEOUTS = {"connect": "5s", "client": "24h", "server": "24h", "queue": "24h"}
_NOT_A_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class ModelServer:
    """Where HAProxy reaches one model version's server: its Unix socket on the host, and the
    CPUs of its container (see :func:`calls_at_once`)."""

    socket: str
    cpus: float


@dataclass(frozen=True)
class Backend:
    """One model version's HAProxy backend: its name, its route, its model server's Unix
    socket and how many calls that server is handed at once."""

    name: str
    route: Route
    socket: str
    calls: int


@dataclass(frozen=True)
class Rule:
    """``use_backend BACKEND if CONDITION``."""

    backend: str
    condition: str


def varint(value: int) -> bytes:
    """``value`` as a protobuf varint: 7 bits a byte, low first, the high bit set on all but
    the last."""
    if value < 0:
        raise ValueError(f"a varint length is never negative, got {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, text: str) -> bytes:
    """A length-delimited protobuf field (wire type 2) holding ``text`` in UTF-8."""
    data = text.encode("utf-8")
    return varint(number << 3 | 2) + varint(len(data)) + data


def backend_name(route: Route) -> str:
    """The HAProxy backend of a route: ``NAME:VERSION`` (semver's ``+`` becomes ``_``, which
    semver never uses)."""
    return _NOT_A_NAME_CHAR.sub("_", f"{route.name}:{route.version}")


def calls_at_once(cpus: float) -> int:
    """How many calls a model's server is handed at once: one per CPU of its container (a
    fraction of a CPU counts as one)."""
    return max(1, math.ceil(cpus))


def bind_address(*, socket: str | None = None, host: str = "127.0.0.1",
                 port: int | None = None) -> str:
    """An HAProxy ``bind`` address: ``unix@PATH``, or ``HOST:PORT`` (``ipv6@`` for IPv6)."""
    if socket is not None:
        return f"unix@{socket}"
    return f"{'ipv6@' if ':' in host else ''}{host}:{port}"


def render_config(routes: Iterable[Route], servers: dict[str, ModelServer], *,
                  binds: Sequence[str], gateway_socket: str, admin_socket: str, grace: float,
                  source: str) -> str:
    """The whole ``haproxy.cfg``; the same text for the same routes, in any order.

    Args:
        routes: every model version served.
        servers: route key -> the model's server.
        binds: the addresses to listen on (see :func:`bind_address`).
        gateway_socket: the Python gateway's internal Unix socket.
        admin_socket: where HAProxy's runtime API listens.
        grace: seconds in-flight calls may take after a soft stop.
        source: the routes file's name, for the header.
    """
    table = RouteTable(routes)
    backends = [Backend(backend_name(r), r, servers[r.key].socket,
                        calls_at_once(servers[r.key].cpus)) for r in table.routes]
    acls, rules = _matching(table, backends)
    return render("haproxy.cfg.jinja", header=HEADER.format(name=source), binds=binds,
                  routed=" ".join(f"/{OIP_SERVICE}/{m}" for m in FAST_METHODS),
                  services=sorted({r.service for r in table.routes if r.service}),
                  acls=acls, rules=rules, backends=backends, gateway_socket=gateway_socket,
                  admin_socket=admin_socket, hard_stop_ms=max(1, round(grace * 1000)),
                  body_wait=BODY_WAIT, prefix=GRPC_PREFIX, timeouts=TIMEOUTS,
                  model_server=MODEL_SERVER, python=PYTHON, python_calls=PYTHON_CALLS)


def _matching(table: RouteTable,
              backends: list[Backend]) -> tuple[list[tuple[str, str]], list[Rule]]:
    """The ACLs (name, criterion) and ``use_backend`` rules, in the table's order."""
    acls: list[tuple[str, str]] = []
    rules: list[Rule] = []
    for backend in backends:
        route = backend.route
        exact = _bytes_acl(GRPC_PREFIX, _prefix(route.name, route.version))
        acls.append((f"is:{backend.name}", exact))
        rules.append(Rule(backend.name, f"routed plain whole is:{backend.name}"))
        if route.service:
            acls.append((f"service:{backend.name}", f"path_beg /{route.service}/"))
            rules.append(Rule(backend.name, f"service:{backend.name} plain whole"))
    for name in sorted({r.name for r in table.routes}):
        latest = backend_name(table.resolve(name, ""))
        named = _prefix(name, "")
        acls.append((f"name:{name}", _bytes_acl(GRPC_PREFIX, named)))
        acls.append((f"name:{name}:versioned",
                     _bytes_acl(GRPC_PREFIX + len(named), varint(VERSION_FIELD << 3 | 2))))
        rules.append(Rule(latest, f"routed plain whole name:{name} !name:{name}:versioned"))
    return acls, rules


def _prefix(name: str, version: str) -> bytes:
    return field(NAME_FIELD, name) + (field(VERSION_FIELD, version) if version else b"")


def _bytes_acl(offset: int, expected: bytes) -> str:
    return f"req.body,bytes({offset},{len(expected)}) -m bin {expected.hex().upper()}"

