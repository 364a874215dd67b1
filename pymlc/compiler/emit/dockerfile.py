"""The multi-stage Dockerfile and its ``.dockerignore``.

Stages: ``env`` (base image, Python venv, the model's and the runtime's requirements), then the
``serving`` and ``batch`` targets on top of it. Each target installs its own heavy dependencies
(the batch target: Java, pyspark, pyarrow) before it copies the runtime, the generated files and
the model code, in that order: an edit to ``model.py`` (or to the runtime) rebuilds only those
copies. The labels, which carry the spec's sha256, come last in each target, so a spec edit
alone rebuilds nothing heavy. Both targets run as a non-root user that has a passwd entry (Java
and Hadoop look the user up) and ``/tmp`` as home; the serving target runs with a read-only root
filesystem. No ``# syntax`` line: the built-in frontend of BuildKit and the classic builder both
read this file as is.
"""
from __future__ import annotations

import posixpath

from ..ir import BuildPlan
from ..shipping import CLUTTER_PATTERNS, CONTEXT_PREFIX, IGNORE_PATTERNS, SECRET_PATTERNS
from .base import Artifact, header, render, shell_quote

__all__ = ["CONTEXT_DIRS", "IGNORE_PATTERNS", "emit_dockerfile", "image_labels"]

# The build context `pymlc image` assembles; the Dockerfile's COPY lines rely on these folders.
CONTEXT_DIRS = {"model": CONTEXT_PREFIX, "generated": "generated", "runtime": "runtime"}


def emit_dockerfile(plan: BuildPlan) -> list[Artifact]:
    return [
        Artifact("Dockerfile", _dockerfile(plan)),
        Artifact(".dockerignore", render("dockerignore.jinja", header=header(plan),
                                         clutter=CLUTTER_PATTERNS, secrets=SECRET_PATTERNS)),
    ]


def _dockerfile(plan: BuildPlan) -> str:
    model = plan.model
    return render(
        "Dockerfile.jinja",
        header=header(plan),
        base=plan.image.base,
        setup=_in_model(model.setup),
        requirements=_in_model(model.requirements),
        runtime_requirements=_pip_args(plan.image.runtime_requirements),
        batch_requirements=_pip_args(plan.image.batch_requirements),
        labels=image_labels(plan),
        socket_dir=posixpath.dirname(plan.serving.socket),
        uid=plan.layout.uid,
    )


def _in_model(path: str | None) -> str:
    return f"model/{path}" if path else ""


def _pip_args(requirements: tuple[str, ...]) -> str:
    return " ".join(shell_quote(r) for r in requirements)


def image_labels(plan: BuildPlan) -> list[tuple[str, str]]:
    """The image's labels; `pymlc image` checks that the built image carries exactly these."""
    return [
        ("org.opencontainers.image.title", plan.name),
        ("org.opencontainers.image.version", plan.version),
        ("org.opencontainers.image.description", plan.description),
        ("org.opencontainers.image.revision", plan.spec_sha256),
        ("pymlc.spec.sha256", plan.spec_sha256),
        ("pymlc.version", plan.pymlc_version),
    ]
