"""Reports this process's use of the Docker engine or of Spark to the test session's tier guard
(``tests/support/tier_guard.py``), which puts this folder on ``PYTHONPATH``: every Python child
of the session loads it at start-up, and so do their children. The guard's own process loads it
by path.

What counts as use, seen through ``sys.addaudithook``: a connection to the Docker engine's Unix
socket (any client) and a child process that is the docker CLI, ``spark-submit``,
``spark-class`` or ``java`` (a SparkSession starts its JVM through ``spark-submit``). Each use
is one line, ``tier<TAB>evidence``, appended to the file named by ``PYMLC_TIER_GUARD_LOG``.
It imports nothing that start-up has not already imported, and never raises.
"""

import os
import sys

__all__ = ["EXECUTABLES", "LOG_ENV", "PID_ENV", "docker_socket", "executable_tier", "install",
           "report"]

LOG_ENV = "PYMLC_TIER_GUARD_LOG"
PID_ENV = "PYMLC_TIER_GUARD_PID"  # the test session's process: its evidence needs no "in"
EXECUTABLES = {"docker": "docker", "dockerd": "docker", "spark-submit": "spark",
               "spark-class": "spark", "pyspark": "spark", "java": "spark"}
_AF_UNIX = 1  # socket.AF_UNIX on Linux, without importing socket into every child


def docker_socket() -> str:
    """The path of the Docker engine's Unix socket for this environment."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


def executable_tier(command: list[str]) -> str | None:
    """The tier a child process running ``command`` needs, judged by its executable."""
    return EXECUTABLES.get(os.path.basename(command[0])) if command else None


def report(tier: str, evidence: str) -> None:
    """Appends one use to the session's log (one small O_APPEND write: lines never mix)."""
    log = os.environ.get(LOG_ENV)
    if not log:
        return
    if str(os.getpid()) != os.environ.get(PID_ENV):
        words = [(arg.strip().splitlines() or [""])[0][:60] for arg in sys.orig_argv[:4]]
        evidence += " in child `" + " ".join(words) + "`"
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{tier}\t{evidence}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _command(value: object) -> list[str]:
    if isinstance(value, (str, bytes, os.PathLike)):
        return [os.fsdecode(value)]
    return [os.fsdecode(item) for item in value]


def _audit(event: str, args: tuple[object, ...]) -> None:
    # Called for every audited event of every thread: the others return at the first test.
    if event == "subprocess.Popen":
        command = _command(args[1])
        tier = executable_tier(command)
        if tier:
            report(tier, "started `" + " ".join(command[:3]) + "`")
    elif event == "socket.connect":
        sock, address = args
        if getattr(sock, "family", None) == _AF_UNIX and isinstance(address, (str, bytes)) \
                and os.fsdecode(address) == docker_socket():
            report("docker", f"connected to {docker_socket()}")


def install() -> None:
    """Adds the audit hook, once per process (audit hooks cannot be removed)."""
    if not getattr(sys, "_pymlc_tier_hook", False):
        sys.addaudithook(_audit)
        sys._pymlc_tier_hook = True


if os.environ.get(LOG_ENV):
    install()
