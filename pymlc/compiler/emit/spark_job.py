"""``batch_job.py``: the thin PySpark entry point; the runtime's spark driver does the work."""

from __future__ import annotations

from ..ir import BuildPlan
from .base import Artifact, header, render
from .model_config import MODEL_CONFIG

__all__ = ["emit_spark_job"]


def emit_spark_job(plan: BuildPlan) -> list[Artifact]:
    content = render("batch_job.py.jinja", header=header(plan), name=plan.name,
                     version=plan.version, config=MODEL_CONFIG)
    return [Artifact("batch_job.py", content)]
