"""How pymlc runs a model's container, in one place: the gateway's model containers,
``pymlc verify``'s serving container and the load check of ``pymlc image`` all start the
serving image with these options (Docker SDK ``containers.run`` keyword arguments).

* no network (``--network none``): the model is reached over a Unix socket in a bind-mounted
  folder, and needs nothing else;
* a read-only root filesystem, with a small tmpfs on ``/tmp`` (the image's ``HOME``), the only
  writable place besides the socket's folder;
* no capabilities at all and no privilege escalation (setuid binaries do not gain anything);
* the spec's ``serving.cpus`` and ``serving.memory_mb`` (swap included, so the limit is the
  limit), and at most ``PIDS_LIMIT`` processes and threads: a fork bomb or a thread leak in a
  model stops there instead of taking the host with it.

The batch container runs a JVM and Spark's Python workers with their own needs: it gets only
:func:`confined` (no network, capabilities or privilege escalation).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PIDS_LIMIT", "TMP_MB", "confined", "model_container_options"]

# Threads count too: grpc's pool, numpy/BLAS threads and the model's own, with room to spare.
PIDS_LIMIT = 256
# /tmp lives in memory and counts against the container's memory limit.
TMP_MB = 64


def confined() -> dict[str, Any]:
    """No network, no capabilities, no privilege escalation."""
    return {"network_mode": "none", "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"]}


def model_container_options(*, cpus: float, memory_mb: int) -> dict[str, Any]:
    """The options of a serving container (see the module's docstring).

    Args:
        cpus: CPUs the container may use (``serving.cpus``).
        memory_mb: its memory limit in MiB, swap included (``serving.memory_mb``).
    """
    return {
        **confined(),
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMP_MB}m,mode=1777"},
        "nano_cpus": int(cpus * 1e9),
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "pids_limit": PIDS_LIMIT,
    }
