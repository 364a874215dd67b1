"""Small model folders that image and verify tests write into tmp paths: a spec with its own
image repository (so that no test rebuilds an image another one uses), the model's code and
any other file; and the removal of their images afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 1800

SPEC = """\
pyml: 1
name: {name}
version: 0.1.0
description: a scratch model of the tests
model:
  kind: dataframe
  entrypoint: {entrypoint}
{model}{fields}{sections}image:
  repository: {repository}
"""
ONE_COLUMN = "inputs:\n  - {name: x, type: float64}\noutputs:\n  - {name: y, type: float64}\n"


def unique_repository(prefix: str) -> str:
    """``pymlc-test/<prefix>-<random>``: an image repository no other test or run uses."""
    return f"pymlc-test/{prefix}-{uuid.uuid4().hex[:8]}"


def write_model(folder: Path, *, repository: str, entrypoint: str, code: str,
                model: str = "", fields: str = ONE_COLUMN, sections: str = "",
                files: dict[str, str] | None = None) -> Path:
    """Write a model folder and return its spec's path.

    Args:
        folder: the folder to create (its name becomes the model's).
        repository: the spec's ``image.repository``.
        entrypoint: ``module:Class``.
        code: the text of ``<module>.py``.
        model: more lines of the ``model:`` section (indented by two spaces).
        fields: the ``inputs:`` and ``outputs:`` sections.
        sections: more top-level sections (``examples:``, ``serving:``).
        files: more files, by path in the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = SPEC.format(name=folder.name, entrypoint=entrypoint, model=model, fields=fields,
                       sections=sections, repository=repository)
    texts = {"pyml.yaml": spec, f"{entrypoint.split(':')[0]}.py": code, **(files or {})}
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "pyml.yaml"


def remove_images(engine: Any, repository: str) -> None:
    """Remove every image tagged in ``repository`` (the build cache keeps their layers)."""
    for image in engine.images.list(name=repository):
        engine.images.remove(image.id, force=True)


def pymlc(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the pymlc CLI in a child process, as a user does."""
    return subprocess.run([sys.executable, "-m", "pymlc", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=ROOT)


def containers_of(engine: Any, label: str, repositories: list[str]) -> list[str]:
    """Names of the containers carrying ``label`` that run an image of ``repositories``.

    The engine is shared: other runs' containers (of other checkouts, of other tests) carry the
    same label and are none of a test's business.
    """
    ids = {image.id for repository in repositories for image in engine.images.list(name=repository)}
    found = engine.containers.list(all=True, ignore_removed=True, filters={"label": label})
    return [c.name for c in found if c.attrs.get("Image") in ids]
