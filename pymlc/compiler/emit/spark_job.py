"""``batch_job.py``: the thin PySpark entry point; the runtime's spark driver does the work."""

from __future__ import annotations

from ..ir import BuildPlan
from .base import Artifact, header, render

__all__ = ["emit_spark_job"]


def emit_spark_job(plan: BuildPlan) -> list[Artifact]:
    content = render("batch_job.py.jinja", header=header(plan), name=plan.name,
                     version=plan.version, config=plan.layout.model_config)
    return [Artifact(plan.layout.batch_job, content)]
