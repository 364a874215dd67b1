"""h2load as a gRPC load generator, shared by the serving and gateway benchmarks.

h2load (C; ``apt-get install -y nghttp2-client``) drives one HTTP/2 connection with a number of
streams in flight and logs each request's latency. It cannot read gRPC trailers, so a caller
checks each target once with a gRPC client for an OK status before measuring it.
"""

from __future__ import annotations

import re
import shutil
import statistics
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Point", "available", "frame", "median", "paired", "run"]


@dataclass
class Point:
    """One measurement: requests per second, latency percentiles, failed requests, mean
    latency (which, by Little's law, only the throughput moves when calls queue)."""

    req_s: float
    p50_ms: float
    p99_ms: float
    failed: int
    mean_ms: float = float("nan")

    def __str__(self) -> str:
        return (f"{self.req_s:.0f} req/s p50 {self.p50_ms:.2f} p99 {self.p99_ms:.2f}"
                f" mean {self.mean_ms:.2f} ms")


def available() -> bool:
    """Whether h2load is installed."""
    return shutil.which("h2load") is not None


def frame(message: bytes) -> bytes:
    """A serialized request as a gRPC length-prefixed message (the request body h2load sends)."""
    return struct.pack(">?I", False, len(message)) + message


def run(target: str, path: str, body: Path, concurrency: int, duration: float,
        work: Path) -> Point:
    """Call ``path`` (``/package.Service/Method``) on ``target`` for ``duration`` seconds.

    Args:
        target: ``unix:PATH`` or ``http://HOST:PORT``.
        path: the gRPC method.
        body: a file holding one framed request (see :func:`frame`).
        concurrency: streams in flight on the one connection.
        duration: seconds measured, after one second of warm-up.
        work: a folder for h2load's per-request log.

    Returns:
        Requests per second and the p50/p99 latency of the measured requests.
    """
    log = work / "h2load.log"
    log.unlink(missing_ok=True)
    command = ["h2load", "-c", "1", "-m", str(concurrency), "-D", f"{duration:g}",
               "--warm-up-time", "1", "-d", str(body), "--log-file", str(log),
               "-H", "content-type: application/grpc", "-H", "te: trailers"]
    if target.startswith("unix:"):
        command += ["-B", target, f"http://localhost{path}"]
    else:
        command += [f"{target}{path}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"(\d+) failed", done.stdout)
    latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines()
                       if line.count("\t") >= 2)
    return Point(len(latencies) / duration, _percentile(latencies, 50),
                 _percentile(latencies, 99), int(found.group(1)) if found else -1,
                 statistics.fmean(latencies) if latencies else float("nan"))


def median(points: list[Point]) -> Point:
    """The median of several rounds of one point, figure by figure; failures add up."""
    return Point(statistics.median(p.req_s for p in points),
                 statistics.median(p.p50_ms for p in points),
                 statistics.median(p.p99_ms for p in points), sum(p.failed for p in points),
                 statistics.median(p.mean_ms for p in points))


def paired(first: list[Point], second: list[Point], compare: Callable[[Point, Point], float],
           *, keep: Callable[[Point, Point], bool] = lambda a, b: True) -> float:
    """The median of ``compare(a, b)`` over the rounds (``keep`` chooses them) that ran both
    targets back to back: within a round the machine's drift between rounds cancels, which it
    does not between two medians."""
    return statistics.median(compare(a, b) for a, b in zip(first, second, strict=True)
                             if keep(a, b))


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return float(statistics.quantiles(values, n=100, method="inclusive")[q - 1])
