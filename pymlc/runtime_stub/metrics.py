"""Prometheus metrics of the server, in the text exposition format, on an opt-in loopback port.

Written by hand (the format is a few lines) so the runtime needs no client library. Recording a
request costs one lock and a few dict updates.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BUCKETS", "Metrics", "serve_metrics"]

# Seconds; from sub-millisecond tensor calls to the 1 s default timeout and beyond.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counters by method and status code, and a latency histogram by method.

    Args:
        model: the model's name, added as a label to every series.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._buckets: defaultdict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self._sums: defaultdict[str, float] = defaultdict(float)
        self._counts: defaultdict[str, int] = defaultdict(int)

    def observe(self, method: str, code: str, seconds: float) -> None:
        """Record one finished request.

        Args:
            method: the RPC's short name (``Predict``, ``ModelInfer``).
            code: its gRPC status code name (``OK``, ``INVALID_ARGUMENT``).
            seconds: its handling time.
        """
        index = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            self._requests[method, code] += 1
            if index < len(BUCKETS):
                self._buckets[method][index] += 1
            self._sums[method] += seconds
            self._counts[method] += 1

    def render(self) -> str:
        """The current values in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            requests = dict(self._requests)
            buckets = {m: list(b) for m, b in self._buckets.items()}
            sums, counts = dict(self._sums), dict(self._counts)
        model = _escape(self._model)
        lines = ["# HELP pymlc_requests_total Requests handled, by method and status code.",
                 "# TYPE pymlc_requests_total counter"]
        lines += [f'pymlc_requests_total{{model="{model}",method="{m}",code="{c}"}} {n}'
                  for (m, c), n in sorted(requests.items())]
        lines += ["# HELP pymlc_request_duration_seconds Time to handle a request.",
                  "# TYPE pymlc_request_duration_seconds histogram"]
        for method in sorted(counts):
            lines += _histogram(f'model="{model}",method="{method}"', buckets.get(method, []),
                                sums[method], counts[method])
        return "\n".join(lines) + "\n"


def _histogram(labels: str, buckets: list[int], total: float, count: int) -> list[str]:
    name = "pymlc_request_duration_seconds"
    lines, cumulative = [], 0
    for bound, n in zip(BUCKETS, buckets, strict=False):
        cumulative += n
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {count}')
    lines.append(f"{name}_sum{{{labels}}} {total}")
    lines.append(f"{name}_count{{{labels}}} {count}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` on ``host:port`` from a daemon thread.

    Args:
        metrics: what to expose.
        port: the TCP port (0 picks a free one; see ``server.server_address``).
        host: loopback by default: metrics are for a local scraper or sidecar.

    Returns:
        The running HTTP server; call ``shutdown()`` to stop it.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pymlc-metrics", daemon=True).start()
    return server
