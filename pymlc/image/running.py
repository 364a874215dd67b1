"""Small helpers for the containers pymlc starts and waits on (the load check of ``pymlc image``
and the containers of ``pymlc verify``): their exit within a time, and the end of their log."""

from __future__ import annotations

from typing import Any

__all__ = ["LOG_TAIL", "logs_tail", "wait_exit"]

LOG_TAIL = 30


def wait_exit(container: Any, timeout: float) -> int | None:
    """The container's exit code, or None if it still runs after ``timeout`` seconds."""
    import requests

    try:
        status = container.wait(timeout=timeout)
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        return None
    return int(status.get("StatusCode", -1))


def logs_tail(container: Any, lines: int = LOG_TAIL) -> list[str]:
    """The last lines of a container's output (stdout and stderr), for a failure report."""
    try:
        text = container.logs(stdout=True, stderr=True, tail=lines).decode(errors="replace")
    except Exception:  # the container may be gone already; the report still goes out
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()]
