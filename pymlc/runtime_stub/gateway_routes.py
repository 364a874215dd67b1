"""The gateway's routes: which model version a request names, and where that model's server
listens. Pure: nothing here opens a connection.

A request is routed on fields 1 and 2 of its message (the model's name and version), read off
the wire by :func:`peek_model` without decoding anything else. User strings echoed in an error
(a model name from a request) are cut by :func:`shown`: a status message travels in a trailer,
and a 100,000-character name must not come back whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SHOWN_CHARS",
    "Route",
    "RouteError",
    "RouteTable",
    "parse_route",
    "peek_model",
    "shown",
    "version_key",
]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# The longest user string an error message repeats; longer ones are cut and their length said.
SHOWN_CHARS = 80


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

    @property
    def package(self) -> str:
        """The protobuf package of the typed service ("" without one)."""
        return self.service.rpartition(".")[0]


class RouteError(Exception):
    """A request cannot be routed: ends the call with ``code`` and this message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` quoted for an error message, cut after ``limit`` characters (the rest counted).

    Example:
        ``shown("x" * 100_000)`` is ``'xxx...x'... (100000 characters)`` with 80 x's.
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


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
            what = f"model {shown(name)}" + (f" version {shown(version)}" if version else "")
            raise RouteError(grpc.StatusCode.NOT_FOUND, f"unknown {what}; this gateway serves"
                             f" {known}")
        return route

    def by_service(self, service: str) -> Route | None:
        return self._by_service.get(service)

    def by_symbol(self, symbol: str) -> Route | None:
        """The route whose typed service's package holds ``symbol`` (a full protobuf name)."""
        for route in self._by_service.values():
            if symbol.startswith(route.package + "."):
                return route
        return None


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
    except IndexError:
        raise ValueError("truncated message") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the model name or version is not UTF-8 ({exc.reason})") from None
    if pos != end:
        raise ValueError("truncated message")
    return found[0], found[1]


_ROUTE = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)(?:@(?P<version>[^=\s]+))?=(?P<target>\S+)$")


def parse_route(text: str, services: dict[str, str] | None = None, *,
                max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Route:
    """``NAME[@VERSION]=TARGET`` (VERSION defaults to ``0``), e.g.
    ``fare-estimator@1.4.0=unix:/run/pyml/model.sock``.

    Args:
        text: the route.
        services: typed service name -> ``NAME[@VERSION]`` it belongs to.
        max_message_bytes: the largest request or response to pass through.

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
    return Route(name, version, found["target"], owned[0] if owned else "", max_message_bytes)
