"""Entry point of the serving image: ``python -m pymlc.runtime_stub.serve``.

Reads ``PYML_MODEL_CONFIG`` (the generated ``model.json``) and ``PYML_MODEL_ROOT`` (the spec's
folder), loads the model, then serves it on the spec's socket and port until SIGTERM or SIGINT,
after which it stops accepting calls, lets in-flight calls finish and exits 0. ``--socket``
and ``--port`` replace the spec's listeners (give either or both); ``--host`` is the TCP
interface. A line ``pymlc: serving NAME VERSION on ADDRESS, ...`` on stderr says it is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .config import ConfigError, ModelConfig, model_root_from_env
from .grpc_server import Listen, ModelServer
from .loader import ModelLoadError

__all__ = ["LOG_LEVEL_ENV", "main"]

LOG_LEVEL_ENV = "PYML_LOG_LEVEL"


def main(argv: Sequence[str] | None = None, *,
         loaded: Callable[[], None] | None = None) -> int:
    """Serve the configured model until SIGTERM/SIGINT.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
        loaded: called once the model and the generated stubs are in memory, before the server
            binds: from then on the files ``PYML_MODEL_CONFIG`` names are no longer read.

    Returns:
        The exit code: 0 after a clean shutdown, 1 if the server could not start.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ModelConfig.from_env()
        server = ModelServer(config, model_root_from_env(), _listen(args, config),
                             metrics_port=_metrics_port(args, config))
    except (ConfigError, ModelLoadError) as exc:
        print(f"pymlc: error: {exc}", file=sys.stderr)
        return 1
    if loaded is not None:
        loaded()
    return asyncio.run(_serve(server, args.grace))


async def _serve(server: ModelServer, grace: float) -> int:
    try:
        addresses = await server.start()
    except OSError as exc:
        print(f"pymlc: error: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = server.config
    print(f"pymlc: serving {config.name} {config.version} on {', '.join(addresses)}",
          file=sys.stderr, flush=True)
    await stop.wait()
    print("pymlc: stopping; finishing in-flight calls", file=sys.stderr, flush=True)
    await server.stop(grace)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pymlc.runtime_stub.serve",
                                description="Serve the model named by PYML_MODEL_CONFIG.")
    p.add_argument("--socket", help="Unix socket path (replaces the spec's listeners)")
    p.add_argument("--port", type=int, help="TCP port, 0 = any free (replaces the spec's"
                   " listeners)")
    p.add_argument("--host", default="127.0.0.1", help="TCP interface (default: 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics on this loopback port"
                   " (default: serving.metrics_port; off if unset)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds in-flight calls may take after SIGTERM (default: 10)")
    p.add_argument("--log-level", default=os.environ.get(LOG_LEVEL_ENV, "info"),
                   choices=("debug", "info", "warning", "error"),
                   help=f"debug logs one line per request (default: ${LOG_LEVEL_ENV} or info)")
    return p


def _listen(args: argparse.Namespace, config: ModelConfig) -> Listen:
    if args.socket is None and args.port is None:
        serving = config.serving
        return Listen(serving.socket or None, serving.port, args.host)
    return Listen(args.socket, args.port, args.host)


def _metrics_port(args: argparse.Namespace, config: ModelConfig) -> int | None:
    return args.metrics_port if args.metrics_port is not None else config.serving.metrics_port


if __name__ == "__main__":
    sys.exit(main())
