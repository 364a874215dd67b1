"""The routes file of a folder of models: what ``pymlc gateway`` serves, written by ``pymlc build``.

One entry per model (sorted by name): its name, version, serving image, in-container socket,
typed service, spec (relative to the routes file's folder) and the limits the gateway applies
(CPUs, memory, message size). Pure, like the emitters: JSON text from compiled plans, and the
file's place from the command's arguments.

Where it goes: with ``-o OUT``, ``OUT/routes.json``; without, ``pyml-routes.json`` in the
folder given (or in the deepest folder common to the targets), beside the specs it lists.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .emit.base import render_json
from .ir import BuildPlan

__all__ = ["ROUTES_FILE", "ROUTES_FORMAT", "ROUTES_IN_TREE", "render_routes", "routes_path"]

ROUTES_FILE = "routes.json"  # in OUT, with -o
ROUTES_IN_TREE = "pyml-routes.json"  # beside the specs, without -o
ROUTES_FORMAT = 1


def routes_path(targets: Sequence[Path], out: Path | None) -> Path:
    """Where the routes file of a build of ``targets`` goes (see the module docstring)."""
    if out is not None:
        return out / ROUTES_FILE
    folders = [t if t.is_dir() else t.parent for t in targets]
    common = Path(os.path.commonpath([os.path.abspath(f) for f in folders]))
    return _relative_like(common, folders[0]) / ROUTES_IN_TREE


def _relative_like(path: Path, example: Path) -> Path:
    # Keep the user's relative paths relative, so messages show what they typed.
    return path if example.is_absolute() else Path(os.path.relpath(path))


def render_routes(models: Sequence[tuple[BuildPlan, Path]], routes_file: Path) -> str:
    """The routes file's text, for ``(plan, spec path)`` pairs.

    Args:
        models: each model's plan and its spec's path.
        routes_file: where the file will be written (spec paths are relative to its folder).
    """
    base = os.path.abspath(routes_file.parent)
    entries = sorted((_entry(plan, spec, base) for plan, spec in models),
                     key=lambda e: (e["name"], e["version"]))
    return render_json({"format": ROUTES_FORMAT,
                        "generated_by": "pymlc build; do not edit",
                        "models": entries})


def _entry(plan: BuildPlan, spec: Path, base: str) -> dict[str, Any]:
    serving = plan.serving
    relative = Path(os.path.relpath(os.path.abspath(spec), base)).as_posix()
    return {
        "name": plan.name,
        "version": plan.version,
        "image": plan.image.reference,
        "socket": serving.socket,
        "service": plan.names.full_service,
        "spec": posixpath.normpath(relative),
        # Only what the gateway applies: a change elsewhere must not make the routes stale.
        "limits": {
            "cpus": serving.cpus,
            "memory_mb": serving.memory_mb,
            "max_message_bytes": serving.max_message_bytes,
        },
    }
