"""Serving benchmark: the pymlc server against a raw grpcio floor, driven by h2load.

Both servers run at once (the idle one costs nothing) and every point alternates pymlc then raw,
so both see the same machine state. h2load (C, ~30 us per request) is the load generator in its
own process; it cannot read gRPC trailers, so each payload is first checked once for an OK
status with a Python client. Latency percentiles come from h2load's per-request log. With
``--rounds`` > 1 the table shows each side's medians, their ratio, and the median of the
per-round ratios ("paired": each round runs both servers back to back, so it cancels the
machine's drift between rounds); every round is printed on stderr.

Needs h2load: apt-get install -y nghttp2-client.
Run: .venv/bin/python bench/serving/run.py [--duration 4] [--out bench/serving/out]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared runner
import h2load  # noqa: E402
from h2load import Point  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
PY = sys.executable
CONCURRENCY = (1, 8, 32)


@dataclass
class Payload:
    name: str
    spec: str
    module: str
    service: str
    data: bytes


def main() -> int:
    args = _parser().parse_args()
    if not h2load.available():
        print("h2load is missing: apt-get install -y nghttp2-client", file=sys.stderr)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pymlc-bench-"))
    rows = []
    try:
        for spec in args.specs:
            generated = _build(spec, work / spec)
            payloads = _payloads(spec, generated)
            rows += _bench_spec(spec, generated, payloads, work, args.duration, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = _table(rows)
    print(table)
    (out / "serving.md").write_text(table + "\n")
    (out / "serving.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=int, default=4, help="seconds per point")
    p.add_argument("--specs", nargs="+", default=["fare-estimator", "digit-net"],
                   choices=["fare-estimator", "digit-net"], help="which example models")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each point this many times, alternating which server goes"
                        " first, and report the medians (the machine's spread is +-15-30%%)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "serving" / "out")
    return p


def _build(spec: str, out: Path) -> Path:
    subprocess.run([PY, "-m", "pymlc", "build", str(SPECS / spec / "pyml.yaml"), "-o", str(out)],
                   check=True, capture_output=True)
    return out


def _payloads(spec: str, generated: Path) -> list[Payload]:
    config = json.loads((generated / "model.json").read_text())
    sys.path.insert(0, str(generated))
    pb2 = __import__(f"{config['proto']['module']}_pb2")
    service = f"{config['proto']['package']}.{config['proto']['service']}"
    module = config["proto"]["module"]
    if spec == "digit-net":
        pixels = np.random.default_rng(0).uniform(0, 16, (64, 8, 8)).astype(np.float32)
        request = pb2.PredictRequest(pixels=pb2.Tensor(shape=pixels.shape, data=pixels.tobytes()))
        return [Payload("digit-net 64x8x8", spec, module, service, request.SerializeToString())]
    records = json.loads((SPECS / spec / "examples" / "input.json").read_text())
    payloads = []
    for n in (1, 1000):
        chosen = [records[i % len(records)] for i in range(n)]
        request = pb2.PredictRequest(
            trip_distance_km={"values": [r["trip_distance_km"] for r in chosen]},
            pickup_hour={"values": [r["pickup_hour"] for r in chosen]},
            passengers={"values": [r["passengers"] for r in chosen]})
        request.city.values.extend(r["city"] or "" for r in chosen)
        if any(r["city"] is None for r in chosen):
            request.city.nulls.extend(r["city"] is None for r in chosen)
        payloads.append(Payload(f"fare {n} row{'s' if n > 1 else ''}", spec, module, service,
                                request.SerializeToString()))
    return payloads


class _Process:
    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True,
                                        stdout=subprocess.DEVNULL)
        assert self.process.stderr is not None
        deadline = time.monotonic() + 120
        line = ""
        while not re.search(r"serving .*on ", line) and time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"{command} exited")
        self.port = int(line.strip().rsplit(":", 1)[1])
        # Drain the log so a chatty server never blocks on a full pipe.
        import threading
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def _bench_spec(spec: str, generated: Path, payloads: list[Payload], work: Path,
                duration: int, rounds: int = 1) -> list[dict[str, Any]]:
    env = dict(os.environ, PYML_MODEL_CONFIG=str(generated / "model.json"),
               PYML_MODEL_ROOT=str(SPECS / spec), PYTHONPATH=str(ROOT), PYML_LOG_LEVEL="warning")
    sockets = {"pymlc": work / f"{spec}-pymlc.sock", "raw": work / f"{spec}-raw.sock"}
    servers = {
        "pymlc": _Process([PY, "-m", "pymlc.runtime_stub.serve", "--socket",
                           str(sockets["pymlc"]), "--port", "0"], env),
        "raw": _Process([PY, str(ROOT / "bench" / "serving" / "raw_server.py"),
                         str(generated / "model.json"), str(SPECS / spec), "--socket",
                         str(sockets["raw"]), "--port", "0"], env),
    }
    rows = []
    try:
        for payload in payloads:
            body = work / "body.bin"
            body.write_bytes(h2load.frame(payload.data))
            for name, server in servers.items():
                _check_ok(payload, f"unix:{sockets[name]}")
                _check_ok(payload, f"127.0.0.1:{server.port}")
            for transport in ("uds", "tcp"):
                for concurrency in CONCURRENCY:
                    runs: dict[str, list[Point]] = {name: [] for name in servers}
                    for round_ in range(rounds):
                        # Alternate who goes first: the second run of a pair meets a warmer
                        # (or more throttled) machine.
                        order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                        for name in order:
                            base = f"unix:{sockets[name]}" if transport == "uds" else \
                                f"http://127.0.0.1:{servers[name].port}"
                            point = h2load.run(base, f"/{payload.service}/Predict", body,
                                               concurrency, duration, work)
                            runs[name].append(point)
                            print(f"  {payload.name} {transport} {concurrency} round"
                                  f" {round_ + 1} {name}: {point}", file=sys.stderr, flush=True)
                    rows.append(_row(payload, transport, concurrency, runs))
                    print(_line(rows[-1]), file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return rows


def _check_ok(payload: Payload, target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{payload.service}/Predict")
        call(payload.data, timeout=30)  # raises unless the status is OK


def _row(payload: Payload, transport: str, concurrency: int,
         runs: dict[str, list[Point]]) -> dict[str, Any]:
    pymlc, raw = h2load.median(runs["pymlc"]), h2load.median(runs["raw"])
    paired = h2load.paired(runs["pymlc"], runs["raw"], lambda p, r: p.req_s / r.req_s,
                           keep=lambda p, r: bool(r.req_s))
    return {"payload": payload.name, "transport": transport, "concurrency": concurrency,
            "pymlc_req_s": round(pymlc.req_s), "pymlc_p50_ms": round(pymlc.p50_ms, 2),
            "pymlc_p99_ms": round(pymlc.p99_ms, 2), "raw_req_s": round(raw.req_s),
            "raw_p50_ms": round(raw.p50_ms, 2), "raw_p99_ms": round(raw.p99_ms, 2),
            "throughput_ratio": round(pymlc.req_s / raw.req_s, 3) if raw.req_s else None,
            "paired_throughput_ratio": round(paired, 3),
            "p99_ratio": round(pymlc.p99_ms / raw.p99_ms, 2) if raw.p99_ms else None,
            "failed": pymlc.failed + raw.failed}


def _line(row: dict[str, Any]) -> str:
    return (f"| {row['payload']} | {row['transport']} | {row['concurrency']} |"
            f" {row['pymlc_req_s']} | {row['pymlc_p50_ms']} | {row['pymlc_p99_ms']} |"
            f" {row['raw_req_s']} | {row['raw_p50_ms']} | {row['raw_p99_ms']} |"
            f" {row['throughput_ratio']} | {row['paired_throughput_ratio']} |"
            f" {row['p99_ratio']} |")


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| payload | transport | in flight | pymlc req/s | pymlc p50 ms | pymlc p99 ms |"
            " raw req/s | raw p50 ms | raw p99 ms | req/s ratio | paired req/s ratio |"
            " p99 ratio |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    return "\n".join([head, *(_line(r) for r in rows)])


if __name__ == "__main__":
    sys.exit(main())
