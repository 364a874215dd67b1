"""The image's HEALTHCHECK: ``python -m pymlc.runtime_stub.health``.

Asks the server's ``grpc.health.v1`` service (over the configured socket, else the configured
port on 127.0.0.1) and exits 0 if it answers SERVING, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .config import ConfigError, ModelConfig

__all__ = ["check", "main"]


def check(target: str, *, timeout: float = 3.0, service: str = "") -> bool:
    """Whether the server at ``target`` reports SERVING.

    Args:
        target: a gRPC target: ``unix:PATH`` or ``HOST:PORT``.
        timeout: seconds to wait for the answer.
        service: the service to ask about ("" = the server as a whole).

    Returns:
        True if the answer is SERVING; False on any other answer or error.
    """
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 if the configured server is SERVING.

    Args:
        argv: ``[--target TARGET] [--timeout S]``; without a target, the spec's socket, else
            its port on 127.0.0.1 (from ``PYML_MODEL_CONFIG``).

    Returns:
        0 if SERVING, else 1.
    """
    p = argparse.ArgumentParser(prog="python -m pymlc.runtime_stub.health")
    p.add_argument("--target", help="unix:PATH or HOST:PORT (default: from the model config)")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    try:
        target = args.target or _target(ModelConfig.from_env())
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    healthy = check(target, timeout=args.timeout)
    print(f"{'SERVING' if healthy else 'unhealthy'}: {target}", file=sys.stderr)
    return 0 if healthy else 1


def _target(config: ModelConfig) -> str:
    if config.serving.socket:
        return f"unix:{config.serving.socket}"
    if config.serving.port is not None:
        return f"127.0.0.1:{config.serving.port}"
    raise ConfigError("the model config has neither serving.socket nor serving.port")


if __name__ == "__main__":
    sys.exit(main())
