"""The containers of one ``pymlc verify`` run: started with no network, no capabilities and a
label naming the run (the serving container also read-only and with the spec's limits, as the
gateway runs it), and all removed at the end, also on failure, Ctrl-C or SIGTERM.

Every container carries ``pymlc.verify=<run id>``; :class:`ContainerRun` removes by that label,
so a container whose start was interrupted half-way is removed too. Host folders shared with a
container are made writable for the user it runs as (the image's non-root user when pymlc runs
as root, else the caller's own uid, so that the caller can delete what it wrote).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from ..image.hardening import confined

__all__ = ["LABEL", "ContainerRun", "interrupt_on_sigterm"]

LABEL = "pymlc.verify"


class ContainerRun:
    """Starts labelled containers for one verify run and removes them all on :meth:`close`."""

    def __init__(self, client: Any, *, run_id: str | None = None) -> None:
        self.client = client
        self.run_id = run_id or uuid.uuid4().hex[:12]

    def start(self, image: str, command: list[str], *, role: str, mounts: dict[Path, str],
              files: dict[Path, str] | None = None, options: dict[str, Any] | None = None,
              image_user: str = "") -> Any:
        """Start ``image`` detached, confined (``pymlc.image.hardening``), with the run's label.

        Args:
            image: the image id or tag.
            command: arguments after the image's entrypoint.
            role: ``serving`` or ``batch``, part of the container's name.
            mounts: host folder -> container folder, bind-mounted read-write.
            files: host file -> path in the container, bind-mounted read-only.
            options: more ``containers.run`` options, e.g. a serving container's
                :func:`~pymlc.image.hardening.model_container_options`.
            image_user: the image's ``User``; its uid owns the mounted folders when we are root.
        """
        import docker

        user = self._share(mounts, image_user)
        return self.client.containers.run(
            image, command, detach=True, name=f"pymlc-verify-{self.run_id}-{role}",
            labels={LABEL: self.run_id, "pymlc.verify.role": role},
            # No network means no resolvable host name; Java (Spark) looks its own up.
            hostname="localhost",
            mounts=[*(docker.types.Mount(target, str(source), type="bind")
                      for source, target in mounts.items()),
                    *(docker.types.Mount(target, str(source), type="bind", read_only=True)
                      for source, target in (files or {}).items())],
            user=user, **{**confined(), **(options or {})})

    def _share(self, mounts: dict[Path, str], image_user: str) -> str | None:
        uid, _, gid = image_user.partition(":")
        for folder in mounts:
            folder.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0 and uid.isdigit():
                os.chown(folder, int(uid), int(gid or uid))
                os.chmod(folder, 0o750)
        if os.geteuid() == 0:
            return None  # the image's own non-root user
        return f"{os.getuid()}:{os.getgid()}"

    def close(self) -> list[str]:
        """Remove every container of this run (running or not); returns their names."""
        import docker

        removed = []
        found = self.client.containers.list(all=True, ignore_removed=True,
                                            filters={"label": f"{LABEL}={self.run_id}"})
        for container in found:
            try:
                container.remove(force=True)
                removed.append(container.name)
            except docker.errors.NotFound:
                pass
        return removed


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` (as Ctrl-C is), so that cleanup runs for both."""
    def _raise(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
