"""``serving.yaml``: how to run the model online (image, socket, port, limits, resources)."""

from __future__ import annotations

from ..ir import BuildPlan
from .base import Artifact, header, render

__all__ = ["emit_serving_config"]


def emit_serving_config(plan: BuildPlan) -> list[Artifact]:
    content = render(
        "serving.yaml.jinja",
        header=header(plan),
        name=plan.name,
        version=plan.version,
        image=plan.image.reference,
        package=plan.names.proto_package,
        service=plan.names.service,
        proto_file=plan.names.proto_path,
        serving=plan.serving,
    )
    return [Artifact("serving.yaml", content)]
