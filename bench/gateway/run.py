"""Gateway benchmark: OIP ModelInfer of fare-estimator (1 row) through `pymlc gateway` against
straight to the model container's Unix socket, in the same run.

`pymlc gateway --start eager` launches the real serving container (no network, the spec's
limits) and listens on a Unix socket; the model's own socket is the bind-mounted one in the
gateway's state folder. h2load (C, ~30 us per request; `apt-get install -y nghttp2-client`)
drives both over Unix sockets from its own process, one connection with 1/8/32 streams in
flight; every point runs direct and gateway back to back (who goes first alternating),
`--rounds` times, and reports the medians of the rounds and the medians of the per-round
differences ("paired", which cancel the machine's drift between rounds); a point meets the goal
only if both do (shared runner: bench/h2load.py). h2load cannot read gRPC trailers, so each target
first answers one call checked for an OK status and the right fare with a Python client.

Run: .venv/bin/python bench/gateway/run.py [--duration 4] [--rounds 3] [--concurrency 1 8 32]
     [--out bench/gateway/out]
     [--data-path auto|haproxy|python]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.service_pb2 as oip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared runner
import h2load  # noqa: E402
from h2load import Point  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FARE = ROOT / "specs" / "fare-estimator"
PY = sys.executable
CONCURRENCY = (1, 8, 32)
METHOD = "/inference.GRPCInferenceService/ModelInfer"
GOAL_THROUGHPUT_COST = 0.15
GOAL_P50_MS = 1.0


def main() -> int:
    args = _parser().parse_args()
    if not h2load.available():
        print("h2load is missing: apt-get install -y nghttp2-client", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gwb-"))
    try:
        rows = _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = _table(rows)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "table.md").write_text(table + "\n")
    return 0 if all(r["met"] for r in rows) else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=4, help="seconds per point")
    p.add_argument("--rounds", type=int, default=3, help="A/B rounds per point (median)")
    p.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                   help="calls in flight, one point each (default: 1 8 32)")
    p.add_argument("--out", type=Path, help="write results.json and table.md here")
    p.add_argument("--data-path", choices=("auto", "haproxy", "python"), default="auto",
                   help="the gateway's data path (default: auto, HAProxy when installed)")
    return p


def _run(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    routes = _build(work)
    body = work / "request.bin"
    body.write_bytes(h2load.frame(_request()))
    gateway = _start_gateway(routes, work, args.data_path)
    try:
        targets = {"direct": _model_socket(work), "gateway": str(work / "gateway.sock")}
        for target in targets.values():
            _check_ok(f"unix:{target}")
        rows = []
        for concurrency in args.concurrency:
            points: dict[str, list[Point]] = {"direct": [], "gateway": []}
            for round_ in range(args.rounds):
                # Alternate who goes first: the second run of a pair meets a warmer (or more
                # throttled) machine.
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for name in order:
                    point = h2load.run(f"unix:{targets[name]}", METHOD, body, concurrency,
                                       args.duration, work)
                    points[name].append(point)
                    print(f"  c={concurrency} round {round_ + 1} {name}: {point}",
                          file=sys.stderr, flush=True)
            rows.append(_row(concurrency, points))
            print(_line(rows[-1]), file=sys.stderr, flush=True)
        return rows
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(60)


def _build(work: Path) -> Path:
    if not (FARE / "artifacts" / "model.joblib").exists():
        subprocess.run([PY, str(FARE / "train.py")], check=True)
    out = work / "build"
    # Two specs make a routes file; the benchmark only calls fare-estimator.
    subprocess.run([PY, "-m", "pymlc", "build", str(FARE / "pyml.yaml"),
                    str(ROOT / "specs" / "digit-net" / "pyml.yaml"), "-o", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    return out / "routes.json"


def _start_gateway(routes: Path, work: Path, data_path: str) -> subprocess.Popen[str]:
    log = (work / "gateway.log").open("w")
    process = subprocess.Popen([PY, "-m", "pymlc", "gateway", str(routes), "--build",
                                "--start", "eager", "--socket", str(work / "gateway.sock"),
                                "--state-dir", str(work / "s"), "--log-level", "warning",
                                "--data-path", data_path],
                               stderr=log, stdout=log, text=True, cwd=ROOT)
    deadline = time.monotonic() + 1800
    while "gateway serving" not in (work / "gateway.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start:\n"
                               + (work / "gateway.log").read_text())
        time.sleep(0.2)
    return process


def _model_socket(work: Path) -> str:
    [socket] = (work / "s").glob("*/fare-estimator-*/model.sock")
    return str(socket)


def _request() -> bytes:
    row = json.loads((FARE / "examples" / "input.json").read_text())[0]
    request = oip.ModelInferRequest(model_name="fare-estimator")
    columns = [("trip_distance_km", "FP64", np.float64), ("pickup_hour", "INT32", np.int32),
               ("passengers", "INT8", np.int8)]
    for name, datatype, dtype in columns:
        request.inputs.add(name=name, datatype=datatype, shape=[1])
        request.raw_input_contents.append(np.asarray([row[name]], dtype).tobytes())
    city = (row["city"] or "").encode()
    request.inputs.add(name="city", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", len(city)) + city)
    return bytes(request.SerializeToString())


def _check_ok(target: str) -> None:
    expected = json.loads((FARE / "examples" / "output.json").read_text())[0]["fare"]
    with grpc.insecure_channel(target) as channel:
        reply = oip.ModelInferResponse.FromString(
            channel.unary_unary(METHOD)(_request(), timeout=30))
    fare = np.frombuffer(reply.raw_output_contents[0], np.float64)[0]
    assert abs(fare - expected) < 1e-9 * abs(expected), (target, fare, expected)


def _row(concurrency: int, points: dict[str, list[Point]]) -> dict[str, Any]:
    direct, gateway = h2load.median(points["direct"]), h2load.median(points["gateway"])
    cost = 1 - gateway.req_s / direct.req_s if direct.req_s else float("nan")
    added = gateway.p50_ms - direct.p50_ms
    pair = points["direct"], points["gateway"]
    paired_cost = h2load.paired(*pair, lambda d, g: 1 - g.req_s / d.req_s,
                                keep=lambda d, g: bool(d.req_s))
    paired_added = h2load.paired(*pair, lambda d, g: g.p50_ms - d.p50_ms)
    # Not a goal: shows whether a p50 difference under queueing is time or the queue's shape.
    paired_mean = h2load.paired(*pair, lambda d, g: g.mean_ms - d.mean_ms)
    return {"concurrency": concurrency,
            "direct_req_s": round(direct.req_s), "direct_p50_ms": round(direct.p50_ms, 2),
            "direct_p99_ms": round(direct.p99_ms, 2),
            "gateway_req_s": round(gateway.req_s), "gateway_p50_ms": round(gateway.p50_ms, 2),
            "gateway_p99_ms": round(gateway.p99_ms, 2),
            "throughput_cost": round(cost, 3), "added_p50_ms": round(added, 2),
            "paired_throughput_cost": round(paired_cost, 3),
            "paired_added_p50_ms": round(paired_added, 2),
            "direct_mean_ms": round(direct.mean_ms, 2),
            "gateway_mean_ms": round(gateway.mean_ms, 2),
            "paired_added_mean_ms": round(paired_mean, 2),
            "failed": direct.failed + gateway.failed,
            "met": max(cost, paired_cost) <= GOAL_THROUGHPUT_COST
            and max(added, paired_added) <= GOAL_P50_MS}


def _line(row: dict[str, Any]) -> str:
    return (f"c={row['concurrency']}: direct {row['direct_req_s']} req/s"
            f" p50 {row['direct_p50_ms']} ms; gateway {row['gateway_req_s']} req/s"
            f" p50 {row['gateway_p50_ms']} ms")


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["| in flight | direct req/s | direct p50 / p99 ms | gateway req/s |"
             " gateway p50 / p99 ms | throughput cost | added p50 | paired cost |"
             " paired added p50 | paired added mean | goal met |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['direct_req_s']} |"
                     f" {r['direct_p50_ms']} / {r['direct_p99_ms']} | {r['gateway_req_s']} |"
                     f" {r['gateway_p50_ms']} / {r['gateway_p99_ms']} |"
                     f" {r['throughput_cost'] * 100:.0f}% | {r['added_p50_ms']:+.2f} ms |"
                     f" {r['paired_throughput_cost'] * 100:.0f}% |"
                     f" {r['paired_added_p50_ms']:+.2f} ms |"
                     f" {r['paired_added_mean_ms']:+.2f} ms | {'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
