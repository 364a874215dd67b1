"""``manifest.json``: the sha256 of every generated file, of the spec and of its lock.

It is emitted last, from the other artifacts, so ``pymlc check`` and image builds can tell at a
glance which spec and which pymlc produced a tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..ir import BuildPlan
from .base import Artifact, header, render_json

__all__ = ["MANIFEST", "emit_manifest", "sha256_text"]

MANIFEST = "manifest.json"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def emit_manifest(plan: BuildPlan, artifacts: Sequence[Artifact], lock_text: str) -> Artifact:
    document = {
        "$comment": header(plan),
        "name": plan.name,
        "version": plan.version,
        "pymlc_version": plan.pymlc_version,
        "spec": {"file": plan.spec_file, "sha256": plan.spec_sha256},
        "lock": {"sha256": sha256_text(lock_text)},
        "files": {a.path: sha256_text(a.content) for a in sorted(artifacts, key=_path)},
    }
    return Artifact(MANIFEST, render_json(document))


def _path(artifact: Artifact) -> str:
    return artifact.path
