"""The build context the generated Dockerfile expects, assembled in a temporary folder::

    .dockerignore   the generated one (read by the engine at the context's root)
    model/          the spec's folder, minus what .dockerignore excludes and minus generated/
    generated/      the files of a fresh, in-memory compile (so the image is what the spec says,
                    whatever state the committed generated/ folder is in)
    runtime/pymlc   the runtime package of the running pymlc, without the compiler

Only ``pymlc/__init__.py``, ``pymlc/_version.py`` and ``pymlc/runtime_stub/`` make the runtime:
the compiler, the templates, the CLI and this backend stay on the host.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..compiler.emit.dockerfile import CONTEXT_DIRS, IGNORE_PATTERNS
from ..compiler.pipeline import Compiled
from ..compiler.write import write_tree

__all__ = ["DOCKERFILE", "RUNTIME_PARTS", "assemble_context"]

# Path of the Dockerfile inside the context, as the engine's `dockerfile` parameter wants it.
DOCKERFILE = f"{CONTEXT_DIRS['generated']}/Dockerfile"
RUNTIME_PARTS = ("__init__.py", "_version.py", "runtime_stub")
_PACKAGE = Path(__file__).resolve().parent.parent  # the running pymlc
_NEVER_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc")


@contextmanager
def assemble_context(compiled: Compiled, *, generated_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary folder holding the build context of ``compiled``; removed afterwards.

    Args:
        compiled: a fresh compile of the spec (``pymlc.compiler.pipeline.compile_spec``).
        generated_dir: the spec's output folder, left out of ``model/`` (default:
            ``generated/`` beside the spec).
    """
    spec_dir = compiled.spec_path.parent.resolve()
    skip = (generated_dir or spec_dir / "generated").resolve()
    with tempfile.TemporaryDirectory(prefix="pymlc-image-") as tmp:
        root = Path(tmp)
        write_tree(root / CONTEXT_DIRS["generated"], compiled.artifacts)
        shutil.copy2(root / CONTEXT_DIRS["generated"] / ".dockerignore", root / ".dockerignore")
        _copy_model(spec_dir, root / CONTEXT_DIRS["model"], skip)
        _copy_runtime(root / CONTEXT_DIRS["runtime"] / "pymlc")
        yield root


def _copy_model(spec_dir: Path, dest: Path, skip: Path) -> None:
    from docker.utils.build import PatternMatcher

    # The same matcher the engine applies to .dockerignore, so what is copied is what it sends.
    matcher = PatternMatcher(list(IGNORE_PATTERNS))
    prefix = CONTEXT_DIRS["model"]
    dest.mkdir(parents=True)
    for folder, dirs, files in os.walk(spec_dir):
        here = Path(folder)
        rel = here.relative_to(spec_dir).as_posix()
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() != skip
                         and not matcher.matches(_join(prefix, rel, d)))
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            if not matcher.matches(_join(prefix, rel, name)):
                shutil.copy2(here / name, dest / rel / name)


def _join(prefix: str, rel: str, name: str) -> str:
    return f"{prefix}/{name}" if rel == "." else f"{prefix}/{rel}/{name}"


def _copy_runtime(dest: Path) -> None:
    dest.mkdir(parents=True)
    for part in RUNTIME_PARTS:
        source = _PACKAGE / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=_NEVER_COPIED)
        else:
            shutil.copy2(source, dest / part)
