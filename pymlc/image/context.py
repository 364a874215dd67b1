"""The build context the generated Dockerfile expects, assembled in a temporary folder::

    .dockerignore   the generated one (read by the engine at the context's root)
    model/          the spec's folder as it ships (``pymlc.compiler.shipping``): no clutter,
                    nothing that looks like a secret, links only inside the folder (kept as
                    relative links), generated/ left out
    generated/      the files of a fresh, in-memory compile (so the image is what the spec says,
                    whatever state the committed generated/ folder is in)
    runtime/pymlc   the runtime package of the running pymlc, without the compiler

Only ``pymlc/__init__.py``, ``pymlc/_version.py`` and ``pymlc/runtime_stub/`` make the runtime:
the compiler, the templates, the CLI and this backend stay on the host. Every file of the
context gets mode 0644 (0755 if it was executable), every folder 0755: the image's non-root
user can read the model whatever its modes on the host, and nothing is writable but by root.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..compiler.emit.dockerfile import CONTEXT_DIRS
from ..compiler.errors import PymlcError
from ..compiler.pipeline import Compiled
from ..compiler.shipping import ModelFiles, scan_model_folder
from ..compiler.write import write_tree

__all__ = ["DOCKERFILE", "RUNTIME_PARTS", "assemble_context", "file_mode", "left_out_note",
           "model_files"]

# Path of the Dockerfile inside the context, as the engine's `dockerfile` parameter wants it.
DOCKERFILE = f"{CONTEXT_DIRS['generated']}/Dockerfile"
RUNTIME_PARTS = ("__init__.py", "_version.py", "runtime_stub")
_PACKAGE = Path(__file__).resolve().parent.parent  # the running pymlc
_NEVER_COPIED = shutil.ignore_patterns("__pycache__", "*.pyc")


def model_files(compiled: Compiled, *, generated_dir: Path | None = None) -> ModelFiles:
    """What of the spec's folder ships in its image.

    Args:
        compiled: a fresh compile of the spec.
        generated_dir: the spec's output folder, left out (default: ``generated/`` beside the
            spec).

    Raises:
        PymlcError: a symbolic link leads outside the folder (``validate`` reports it too;
            this catches one made since).
    """
    spec_dir = compiled.spec_path.parent
    files = scan_model_folder(spec_dir, skip=generated_dir or spec_dir / "generated")
    if files.outside:
        raise PymlcError("\n".join(f"{compiled.spec_path}: error[E301]: {link.message()}"
                                   for link in files.outside))
    return files


def left_out_note(files: ModelFiles, *, limit: int = 40) -> str | None:
    """One line naming what of the spec's folder does not ship, and why; None if nothing."""
    if not files.left_out:
        return None
    named = ", ".join(str(item) for item in files.left_out[:limit])
    more = f" and {len(files.left_out) - limit} more" if len(files.left_out) > limit else ""
    return (f"left out of the image: {named}{more}; files that look like secrets never ship"
            " (credentials are given to the container at run time: `pymlc image --help`)")


@contextmanager
def assemble_context(compiled: Compiled, *, generated_dir: Path | None = None,
                     files: ModelFiles | None = None) -> Iterator[Path]:
    """Yield a temporary folder holding the build context of ``compiled``; removed afterwards.

    Args:
        compiled: a fresh compile of the spec (``pymlc.compiler.pipeline.compile_spec``).
        generated_dir: the spec's output folder, left out of ``model/`` (default:
            ``generated/`` beside the spec).
        files: :func:`model_files` of the spec, if already made.

    Raises:
        PymlcError: a symbolic link leads outside the spec's folder.
    """
    files = files or model_files(compiled, generated_dir=generated_dir)
    with tempfile.TemporaryDirectory(prefix="pymlc-image-") as tmp:
        root = Path(tmp)
        write_tree(root / CONTEXT_DIRS["generated"], compiled.artifacts)
        shutil.copy2(root / CONTEXT_DIRS["generated"] / ".dockerignore", root / ".dockerignore")
        _copy_model(files, root / CONTEXT_DIRS["model"])
        _copy_runtime(root / CONTEXT_DIRS["runtime"] / "pymlc")
        _settle_modes(root)
        yield root


def _copy_model(files: ModelFiles, dest: Path) -> None:
    dest.mkdir(parents=True)
    for folder in files.dirs:
        (dest / folder).mkdir(parents=True, exist_ok=True)
    for name in files.files:
        try:
            shutil.copy2(files.root / name, dest / name, follow_symlinks=False)
        except OSError as exc:
            raise PymlcError(f"cannot copy {files.root / name} into the image's build context:"
                             f" {exc.strerror or exc}") from None
    for link, target in files.links.items():
        os.symlink(target, dest / link)


def _copy_runtime(dest: Path) -> None:
    dest.mkdir(parents=True)
    for part in RUNTIME_PARTS:
        source = _PACKAGE / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=_NEVER_COPIED)
        else:
            shutil.copy2(source, dest / part)


def file_mode(mode: int) -> int:
    """The mode a file gets in the context: 0755 if anyone could execute it, else 0644."""
    return 0o755 if stat.S_IMODE(mode) & 0o111 else 0o644


def _settle_modes(root: Path) -> None:
    root.chmod(0o755)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        for name in dirs:
            if not (here / name).is_symlink():
                (here / name).chmod(0o755)
        for name in names:
            path = here / name
            if not path.is_symlink():
                path.chmod(file_mode(path.stat().st_mode))
