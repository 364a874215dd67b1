"""``kubernetes.yaml``: the model online on a cluster, a Deployment and a Service.

The pod is the cluster form of PyML's nested container: the model server (the serving image's
own entrypoint, listening only on its Unix socket) and a gateway container (the same image,
running ``pymlc.runtime_stub.gateway``) share an ``emptyDir`` holding the socket. The gateway
serves gRPC on TCP for the Service and for the kubelet's native ``grpc`` probes: readiness asks
grpc.health.v1 for "" (SERVING while the model answers through the socket), liveness asks for
the gateway itself. Both containers run as the image's non-root user with a read-only root,
no privilege escalation and no capabilities; the model's requests and limits are the spec's
``serving.cpus`` and ``serving.memory_mb``.
"""

from __future__ import annotations

import posixpath

from ...runtime_stub.gateway import LIVENESS_SERVICE
from ..ir import BuildPlan
from .base import Artifact, header, render

__all__ = ["GATEWAY_PORT", "KUBERNETES", "emit_kubernetes", "gateway_command", "quantities"]

KUBERNETES = "kubernetes.yaml"
GATEWAY_PORT = 8500  # when the spec sets no serving.port
# The gateway only passes bytes along: a small, fixed share of the node.
GATEWAY_RESOURCES = {"cpu_request": "100m", "cpu_limit": "1", "memory": "256Mi"}
GATEWAY_GRACE_S = 10  # the gateway's drain after SIGTERM
GATEWAY_PRE_STOP_S = 5  # endpoint removal reaching clients before the drain starts
MODEL_PRE_STOP_S = GATEWAY_PRE_STOP_S + GATEWAY_GRACE_S  # the model outlives the gateway's drain
TERMINATION_GRACE_S = MODEL_PRE_STOP_S + 15


def emit_kubernetes(plan: BuildPlan) -> list[Artifact]:
    model_cpu, model_memory = quantities(plan.serving.cpus, plan.serving.memory_mb)
    content = render(
        KUBERNETES + ".jinja",
        header=header(plan),
        name=plan.name,
        image=plan.image.reference,
        labels=_labels(plan),
        selector=_selector(plan),
        annotations=_annotations(plan),
        uid=plan.layout.uid,
        port=_port(plan),
        socket_dir=posixpath.dirname(plan.serving.socket),
        model_args=["--socket", plan.serving.socket],
        model_cpu=model_cpu,
        model_memory=model_memory,
        health_command=["python", "-m", "pymlc.runtime_stub.health"],
        model_pre_stop=["sleep", str(MODEL_PRE_STOP_S)],
        gateway_command=gateway_command(plan, _port(plan)),
        gateway_cpu_request=GATEWAY_RESOURCES["cpu_request"],
        gateway_cpu_limit=GATEWAY_RESOURCES["cpu_limit"],
        gateway_memory=GATEWAY_RESOURCES["memory"],
        gateway_pre_stop=["sleep", str(GATEWAY_PRE_STOP_S)],
        liveness_service=LIVENESS_SERVICE,
        termination_grace=TERMINATION_GRACE_S,
    )
    return [Artifact(KUBERNETES, content)]


def quantities(cpus: float, memory_mb: int) -> tuple[str, str]:
    """Kubernetes quantities for a CPU count and megabytes: ``(1.5, 512) -> ("1500m", "512Mi")``.
    """
    return f"{round(cpus * 1000)}m", f"{memory_mb}Mi"


def gateway_command(plan: BuildPlan, port: int) -> list[str]:
    """The gateway container's command: this model, its typed service, on every interface."""
    model = f"{plan.name}@{plan.version}"
    service = plan.names.full_service
    return ["python", "-m", "pymlc.runtime_stub.gateway",
            "--route", f"{model}=unix:{plan.serving.socket}",
            "--service", f"{service}={model}",
            "--port", str(port), "--host", "0.0.0.0",
            "--grace", str(GATEWAY_GRACE_S)]


def _port(plan: BuildPlan) -> int:
    return plan.serving.port if plan.serving.port is not None else GATEWAY_PORT


def _selector(plan: BuildPlan) -> list[tuple[str, str]]:
    return [("app.kubernetes.io/name", plan.name),
            ("app.kubernetes.io/component", "model-server")]


def _labels(plan: BuildPlan) -> list[tuple[str, str]]:
    # A label value may not hold '+': the image tag is the version with it replaced.
    return [*_selector(plan),
            ("app.kubernetes.io/version", plan.image.tag),
            ("app.kubernetes.io/managed-by", "pymlc")]


def _annotations(plan: BuildPlan) -> list[tuple[str, str]]:
    return [("pymlc.io/description", plan.description),
            ("pymlc.io/spec-sha256", plan.spec_sha256)]
