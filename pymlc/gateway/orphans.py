"""What a gateway killed with ``kill -9`` leaves behind, and its removal by the next one.

A gateway that gets no chance to clean up leaves its model containers running and its state
folder (sockets, HAProxy's files) on disk. Each gateway writes an ``owner`` file into its state
folder: the process that owns it (boot id, pid namespace, pid, start time, so that a recycled
pid is not mistaken for it). A starting gateway removes every container labelled
``pymlc.gateway`` whose state folder (the parent of its socket's bind mount) names an owner that
is gone, then that folder; and the dead gateways' folders beside its own.

Removed rather than adopted: a model container holds no state but its socket, it costs one cold
start (about a second) to replace, and adopting it would mean trusting a folder, a route and a
configuration that another process wrote, maybe from another routes file. A container whose
owner cannot be judged (another pid namespace, no owner file) is left alone: it may belong to a
live gateway.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["OWNER_FILE", "owner_alive", "owner_of_this_process", "reap_orphans", "write_owner"]

log = logging.getLogger("pymlc.gateway")

OWNER_FILE = "owner"


def owner_of_this_process() -> str:
    """This process as an owner string: ``BOOT_ID PID_NAMESPACE PID START_TIME``."""
    return _owner(os.getpid())


def write_owner(folder: Path) -> None:
    """Mark ``folder`` (a gateway's state folder) as this process's."""
    (folder / OWNER_FILE).write_text(owner_of_this_process() + "\n")


def owner_alive(owner: str) -> bool | None:
    """Whether the process an owner string names still runs; None if it cannot be told (it ran
    in another pid namespace, or this system has no /proc)."""
    try:
        boot, namespace, pid, started = owner.split()
        if boot != _boot_id():
            return False  # the machine restarted since: no process of that boot survives
        if namespace != _pid_namespace():
            return None
    except (OSError, ValueError):
        return None
    try:
        return _owner(int(pid)) == owner.strip()
    except OSError:
        return False


def reap_orphans(client: Any, label: str, *, instance: str, state_root: Path) -> int:
    """Remove the containers and state folders of dead gateways.

    Args:
        client: a ``docker.DockerClient``.
        label: the label every gateway container carries (its value: the gateway instance).
        instance: this gateway's instance (never reaped).
        state_root: the folder holding this gateway's state folder (and maybe dead ones').

    Returns:
        How many containers were removed.
    """
    removed, folders = 0, set()
    for container, folder in _orphaned_containers(client, label, instance):
        log.warning("removing container %s of gateway %s, whose process is gone",
                    container.name, container.labels.get(label))
        container.remove(force=True)
        removed += 1
        folders.add(folder)
    folders.update(_orphaned_folders(state_root, instance))
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _orphaned_containers(client: Any, label: str, instance: str) -> Iterator[tuple[Any, Path]]:
    for container in client.containers.list(all=True, ignore_removed=True,
                                            filters={"label": label}):
        owner = container.labels.get(label, "")
        folder = _state_folder(container, owner)
        if owner and owner != instance and folder is not None and _dead(folder):
            yield container, folder


def _orphaned_folders(state_root: Path, instance: str) -> Iterator[Path]:
    try:
        folders = [p for p in state_root.iterdir() if p.name != instance]
    except OSError:
        return
    for folder in folders:
        if (folder / OWNER_FILE).is_file() and _dead(folder):
            yield folder


def _state_folder(container: Any, instance: str) -> Path | None:
    """The gateway state folder a container's socket lives in (named after its instance)."""
    for mount in container.attrs.get("Mounts", []):
        source = Path(mount.get("Source", "/"))
        if source.parent.name == instance:
            return source.parent
    return None


def _dead(folder: Path) -> bool:
    """The folder's gateway is known to be gone: its owner died, or the folder itself (with
    its sockets) was removed."""
    try:
        owner = (folder / OWNER_FILE).read_text()
    except FileNotFoundError:
        return not folder.exists()
    except OSError:
        return False
    return owner_alive(owner) is False


def _owner(pid: int) -> str:
    return f"{_boot_id()} {_pid_namespace()} {pid} {_start_time(pid)}"


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _pid_namespace() -> str:
    return os.readlink("/proc/self/ns/pid")


def _start_time(pid: int) -> str:
    """Clock ticks from boot to the process's start (field 22 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[19]
