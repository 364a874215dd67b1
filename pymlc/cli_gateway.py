"""``pymlc gateway``: one gRPC endpoint for a folder of models, each launched on demand as its
own serving container through the Docker engine and reached over a Unix socket.

The models come from the routes file that ``pymlc build DIR`` writes (``DIR/pyml-routes.json``,
or ``OUT/routes.json`` with ``-o OUT``). See ``docs/gateway.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TypeAlias

__all__ = ["register"]

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXIT_USAGE = 2


def register(sub: _SubParsers) -> None:
    """Add the ``gateway`` command to the ``pymlc`` parser."""
    p = sub.add_parser("gateway", help="serve many models behind one gRPC endpoint (Docker)",
                       description="Route Open Inference Protocol v2 calls by model name to"
                       " each model's serving container, started on demand with no network"
                       " and reached over a Unix socket.")
    p.add_argument("routes", nargs="?", type=Path, default=Path("pyml-routes.json"),
                   metavar="ROUTES", help="routes file written by `pymlc build DIR`"
                   " (default: ./pyml-routes.json)")
    p.add_argument("--socket", metavar="PATH", help="Unix socket to listen on")
    p.add_argument("--port", type=int, metavar="N", help="TCP port to listen on (0 = any free)")
    p.add_argument("--host", default="127.0.0.1", help="TCP interface (default: 127.0.0.1)")
    p.add_argument("--start", choices=("lazy", "eager"), default="lazy",
                   help="start a model's container on its first request (lazy, default) or"
                   " every container before serving (eager)")
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="stop a container unused for S seconds (default: never)")
    p.add_argument("--start-timeout", type=float, default=120.0, metavar="S",
                   help="seconds a container may take to become healthy (default: 120)")
    p.add_argument("--state-dir", type=Path, metavar="DIR", help="host folder for the models'"
                   " sockets (default: $TMPDIR/pymlc-gateway); keep it short")
    p.add_argument("--threads", type=int, default=16,
                   help="threads for blocking work such as starting containers; calls hold"
                   " none (default: 16)")
    p.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="seconds in-flight calls may take after SIGTERM (default: 10)")
    p.add_argument("--build", action="store_true",
                   help="build missing serving images first (through `pymlc image`)")
    p.add_argument("--data-path", choices=("auto", "haproxy", "python"), default="auto",
                   help="what carries the calls: HAProxy routing on each call's first bytes"
                   " straight to the model's container, with the Python gateway behind it"
                   " (haproxy), the Python gateway alone (python), or haproxy when it is"
                   " installed (auto, default)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(handler=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    from .gateway import GatewayOptions, run_gateway

    if args.socket is None and args.port is None:
        print("pymlc gateway: error: give --socket PATH and/or --port N", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = GatewayOptions(socket=args.socket, port=args.port, host=args.host,
                             start=args.start, idle_timeout=args.idle_timeout,
                             start_timeout=args.start_timeout, state_dir=args.state_dir,
                             threads=args.threads, grace=args.grace, build=args.build,
                             data_path=args.data_path)
    return run_gateway(args.routes, options, say=_err)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
