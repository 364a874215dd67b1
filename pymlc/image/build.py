"""Build an image of a compiled spec through the Docker engine, streaming progress.

The ``docker`` SDK's low-level API drives the engine's classic builder (the SDK cannot drive
BuildKit); the generated Dockerfile builds with both. Builds use the host's network (the engine
runs without a bridge, see ``scripts/setup-docker``); the engine's step output is parsed into
:class:`Step` records so that a failure names its step and shows the end of that step's log.

Exception tree (all are ``PymlcError``, so the CLI prints them without a traceback)::

    ImageError
    ├── EngineUnavailableError   the Docker engine (or the docker SDK) is not there
    └── BuildError               the build failed: the step, and the tail of its log
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..compiler.emit.dockerfile import image_labels
from ..compiler.errors import PymlcError
from ..compiler.ir import BuildPlan
from ..compiler.pipeline import Compiled
from ..compiler.shipping import LeftOut, ModelFiles
from .context import DOCKERFILE, assemble_context, model_files

__all__ = [
    "DEFAULT_HOST",
    "TAIL_LINES",
    "TARGETS",
    "BuildError",
    "BuildProgress",
    "BuiltImage",
    "EngineUnavailableError",
    "ImageError",
    "Step",
    "build_image",
    "connect",
    "image_tags",
]

TARGETS = ("serving", "batch")
TAIL_LINES = 20
DEFAULT_HOST = "unix:///var/run/docker.sock"
START_HINT = (
    "start it, then retry: `sudo scripts/setup-docker` in a pymlc checkout (installs and starts"
    " it, with the local base image), or `sudo systemctl start docker`, or without a bridge"
    " network: `sudo setsid dockerd --bridge=none --iptables=false &`"
)
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# The classic builder colours a step's stderr; logs and terminals get plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Engine bookkeeping between a step's own output lines; not part of any step's log.
_NOISE = (" ---> ", "Removing intermediate container ", "Successfully built ",
          "Successfully tagged ")


class ImageError(PymlcError):
    """An image could not be built."""


class EngineUnavailableError(ImageError):
    """The Docker engine cannot be reached (or the ``docker`` SDK is not installed)."""


class BuildError(ImageError):
    """The engine reported a failed build; ``step`` is the failing step, if any."""

    def __init__(self, message: str, step: Step | None, tail: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.tail = tail


@dataclass
class Step:
    """One Dockerfile instruction as the engine ran it."""

    number: int
    total: int
    instruction: str
    cached: bool = False
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"step {self.number}/{self.total}: {self.instruction}"


@dataclass(frozen=True)
class BuiltImage:
    """A finished build: the image id, every tag given to it, its steps, and what of the
    spec's folder was left out (see ``pymlc.compiler.shipping``)."""

    id: str
    target: str
    tags: tuple[str, ...]
    steps: tuple[Step, ...]
    seconds: float
    size: int
    left_out: tuple[LeftOut, ...] = ()


class BuildProgress(Protocol):
    """Receives the build's progress as it streams (see ``pymlc.cli_image`` for the CLI's)."""

    def step_started(self, step: Step) -> None: ...

    def step_output(self, step: Step, line: str) -> None: ...

    def step_finished(self, step: Step) -> None: ...


def connect() -> Any:
    """A ``docker.DockerClient`` for the engine in the environment (``DOCKER_HOST`` or the
    default socket).

    Raises:
        EngineUnavailableError: the SDK is missing or the engine does not answer.
    """
    try:
        import docker
    except ImportError as exc:
        raise EngineUnavailableError("the docker SDK is not installed: pip install"
                                     " 'pymlc[image]'") from exc
    where = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    try:
        # The SDK leaks its socket when the engine is absent; probe a Unix socket first.
        if where.startswith("unix://"):
            _probe(where.removeprefix("unix://"))
        client = docker.from_env()
        client.ping()
    except (OSError, docker.errors.DockerException) as exc:
        raise EngineUnavailableError(f"cannot reach the Docker engine at {where}"
                                     f" ({_reason(exc)}); {START_HINT}") from exc
    return client


def _probe(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        probe.connect(path)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc)
    for known in ("No such file or directory", "Connection refused", "Permission denied"):
        if known in text:
            return known.lower()
    return text


def image_tags(plan: BuildPlan, target: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The target's version and spec tags (``ImagePlan.tags``), then ``extra``."""
    return (*plan.image.tags(target), *extra)


def build_image(compiled: Compiled, *, target: str = "serving", extra_tags: Iterable[str] = (),
                nocache: bool = False, client: Any = None,
                progress: BuildProgress | None = None,
                files: ModelFiles | None = None) -> BuiltImage:
    """Build ``target`` of the compiled spec and tag it (see :func:`image_tags`).

    Args:
        files: what of the spec's folder ships (:func:`~pymlc.image.context.model_files`), if
            the caller made it already (to tell the user what is left out before building).

    Raises:
        EngineUnavailableError: no engine.
        BuildError: the build failed; the error names the step and carries its log's tail.
        PymlcError: a symbolic link leads outside the spec's folder.
    """
    if target not in TARGETS:
        raise ImageError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    client = client or connect()
    tags = image_tags(compiled.plan, target, extra_tags)
    _check_references(tags)
    files = files or model_files(compiled)
    started = time.monotonic()
    with assemble_context(compiled, files=files) as context:
        stream = _stream(client, str(context), target=target, tag=tags[0], nocache=nocache)
        image_id, steps = _follow(stream, progress)
    for tag in tags[1:]:
        repository, _, name = tag.rpartition(":") if _has_tag(tag) else (tag, "", "latest")
        client.api.tag(image_id, repository, name)
    inspected = client.api.inspect_image(image_id)
    _check_labels(compiled.plan, inspected["Config"].get("Labels") or {})
    return BuiltImage(image_id, target, tags, tuple(steps), time.monotonic() - started,
                      int(inspected["Size"]), tuple(files.left_out))


def _check_labels(plan: BuildPlan, found: Mapping[str, str]) -> None:
    # The Dockerfile sets them (passing them to the engine too would add a step per label).
    # The Dockerfile writes values on one line, so compare with whitespace collapsed.
    wrong = [key for key, value in image_labels(plan) if found.get(key) != " ".join(value.split())]
    if wrong:
        raise ImageError(f"the built image lacks the labels {', '.join(wrong)} (or has other"
                         " values): the Dockerfile template no longer sets them")


def _check_references(tags: Iterable[str]) -> None:
    from docker.utils import match_tag

    bad = [tag for tag in tags if not match_tag(tag)]
    if bad:
        raise ImageError(f"not a valid image reference: {', '.join(map(repr, bad))}"
                         " (expected a lowercase reference such as registry.example.com/team/"
                         "model:1.0)")


def _has_tag(reference: str) -> bool:
    return ":" in reference.rpartition("/")[2]


def _stream(client: Any, path: str, **options: Any) -> Iterator[Mapping[str, Any]]:
    import docker
    import requests

    try:
        yield from client.api.build(path=path, dockerfile=DOCKERFILE, decode=True,
                                    network_mode="host", rm=True, forcerm=True, **options)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildError(getattr(exc, "explanation", None) or str(exc), None, []) from exc


def _follow(stream: Iterable[Mapping[str, Any]],
            progress: BuildProgress | None) -> tuple[str, list[Step]]:
    parser = _StreamParser(progress)
    for chunk in stream:
        parser.feed(chunk)
    return parser.finish()


class _StreamParser:
    """Turns the engine's JSON chunks into steps; raises :class:`BuildError` on an error."""

    def __init__(self, progress: BuildProgress | None) -> None:
        self.progress = progress
        self.steps: list[Step] = []
        self.image_id: str | None = None
        self._pending = ""
        self._open = False
        self._clock = time.monotonic()

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "error" in chunk or "errorDetail" in chunk:
            self._flush()
            detail = chunk.get("errorDetail") or {}
            self._fail(str(detail.get("message") or chunk.get("error") or "build failed"))
        if isinstance(chunk.get("aux"), Mapping) and "ID" in chunk["aux"]:
            self.image_id = str(chunk["aux"]["ID"])
        text = chunk.get("stream")
        if isinstance(text, str):
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(line)

    def finish(self) -> tuple[str, list[Step]]:
        self._flush()
        self._finish_step()
        if self.image_id is None:
            self._fail("the engine ended the build without reporting an image")
        assert self.image_id is not None
        return self.image_id, self.steps

    def _flush(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, raw: str) -> None:
        # Keep only the last state of a progress bar, without colour codes.
        line = _ANSI.sub("", raw.rsplit("\r", 1)[-1]).rstrip()
        match = _STEP.match(line)
        if match:
            self._finish_step()
            step = Step(int(match[1]), int(match[2]), match[3])
            self.steps.append(step)
            self._open = True
            self._clock = time.monotonic()
            if self.progress:
                self.progress.step_started(step)
        elif not self.steps:
            return
        elif line.startswith(" ---> Using cache"):
            self.steps[-1].cached = True
        elif line and not line.startswith(_NOISE):
            self.steps[-1].log.append(line)
            if self.progress:
                self.progress.step_output(self.steps[-1], line)

    def _finish_step(self) -> None:
        if self._open:
            self._open = False
            step = self.steps[-1]
            step.seconds = time.monotonic() - self._clock
            if self.progress:
                self.progress.step_finished(step)

    def _fail(self, message: str) -> None:
        step = self.steps[-1] if self.steps else None
        if step and step.instruction.upper().startswith("FROM "):
            message += ("\n(no registry? the base image must exist locally:"
                        " `sudo scripts/base-image` makes python:3.11-slim)")
        raise BuildError(message, step, step.log[-TAIL_LINES:] if step else [])
