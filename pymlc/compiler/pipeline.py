"""The compiler pipeline: ``compile_spec(path)`` = load -> validate -> lower -> emit.

Pure: it reads the spec, its lock and the files the spec names, and returns artifacts; nothing
is written here (see ``write.py``). No clock, no network, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from .emit import EMITTERS, Artifact, emit_manifest
from .errors import Diagnostic, EmitError, Level, SpecError
from .ir import BuildPlan
from .load import load_document
from .lock import EMPTY_LOCK, LOCK_FILE, Lock, parse_lock, render_lock, update_lock
from .lower import lower
from .spec import Spec
from .validate import validate_document

__all__ = [
    "SPEC_FILE",
    "Compiled",
    "compile_spec",
    "ensure_no_duplicates",
    "find_specs",
    "load_spec",
]

SPEC_FILE = "pyml.yaml"
# Folders never searched for specs: VCS data, environments, and our own outputs.
_SKIP_DIRS = frozenset({".git", ".hg", ".venv", "venv", "node_modules", "__pycache__",
                        "generated", ".tox", ".mypy_cache", ".pytest_cache"})


@dataclass(frozen=True)
class Compiled:
    """One compiled spec: its plan, every artifact (manifest last), and the updated lock."""

    spec_path: Path
    plan: BuildPlan
    artifacts: tuple[Artifact, ...]
    lock_text: str
    warnings: tuple[Diagnostic, ...]

    @property
    def lock_path(self) -> Path:
        return self.spec_path.parent / LOCK_FILE


def load_spec(path: Path, *, display: str | None = None) -> tuple[Spec, list[Diagnostic], str]:
    """Load and validate one spec file; returns the spec, its warnings and its LF text."""
    doc = load_document(path, display)
    spec, warnings = validate_document(doc, path.parent)
    return spec, warnings, doc.text


def compile_spec(path: Path, *, display: str | None = None) -> Compiled:
    """Compile the spec at ``path``.

    Raises:
        SpecError: the spec or its lock is invalid; every problem is listed.
    """
    spec, warnings, text = load_spec(path, display=display)
    lock = _read_lock(path.parent / LOCK_FILE, display)
    lock = update_lock(lock, [f.name for f in spec.inputs], [f.name for f in spec.outputs])
    plan = lower(spec, lock, spec_file=path.name,
                 spec_sha256=hashlib.sha256(text.encode()).hexdigest(),
                 pymlc_version=__version__)
    lock_text = render_lock(lock)
    artifacts = _emit_all(plan)
    manifest = emit_manifest(plan, artifacts, lock_text)
    return Compiled(path, plan, (*artifacts, manifest), lock_text, tuple(warnings))


def _read_lock(path: Path, display: str | None) -> Lock:
    if not path.exists():
        return EMPTY_LOCK
    shown = str(Path(display).parent / LOCK_FILE) if display else str(path)
    return parse_lock(path.read_text(encoding="utf-8"), shown)


def _emit_all(plan: BuildPlan) -> list[Artifact]:
    artifacts = [artifact for emit in EMITTERS.values() for artifact in emit(plan)]
    seen: dict[str, Artifact] = {}
    for artifact in artifacts:
        if artifact.path in seen:
            raise EmitError([Diagnostic(plan.spec_file, (), None, Level.ERROR, "E502",
                                        f"two emitters wrote {artifact.path}")])
        seen[artifact.path] = artifact
    return sorted(artifacts, key=lambda a: a.path)


def find_specs(targets: Iterable[Path]) -> Iterator[Path]:
    """Each target that is a file, and every ``pyml.yaml`` below each target that is a folder."""
    for target in targets:
        if target.is_dir():
            yield from sorted(_walk(target))
        else:
            yield target


def _walk(folder: Path) -> Iterator[Path]:
    for child in folder.iterdir():
        if child.is_dir():
            if child.name not in _SKIP_DIRS and not child.name.startswith("."):
                yield from _walk(child)
        elif child.name == SPEC_FILE:
            yield child


def ensure_no_duplicates(compiled: list[Compiled]) -> None:
    """Two specs in one run must not have the same name (their outputs would collide)."""
    seen: dict[str, Path] = {}
    problems = []
    for c in compiled:
        if c.plan.name in seen:
            problems.append(Diagnostic(str(c.spec_path), ("name",), None, Level.ERROR, "E503",
                                       f"model name {c.plan.name!r} is also used by"
                                       f" {seen[c.plan.name]}; model names must be unique"))
        seen.setdefault(c.plan.name, c.spec_path)
    if problems:
        raise SpecError(problems)
