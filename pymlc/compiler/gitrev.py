"""Read files as they were at a git revision (``pymlc diff --against REV``).

Only ``git`` itself is run (``rev-parse``, ``cat-file``, ``show``, ``ls-tree``), with arguments
as a list, never through a shell; a revision that looks like an option is refused. Paths are
resolved against the repository's top level, so the command works from any sub-folder.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import PymlcError

__all__ = ["GitRevError", "Revision", "open_revision"]


class GitRevError(PymlcError):
    """Git cannot answer: not a repository, an unknown revision, or a path outside the repo."""


@dataclass(frozen=True)
class Revision:
    """One commit of one repository; ``rev`` is what the user typed, ``commit`` its hash."""

    root: Path
    rev: str
    commit: str

    def relative(self, path: Path) -> PurePosixPath:
        """``path`` (on disk) relative to the repository's top level."""
        resolved = path.resolve()
        try:
            return PurePosixPath(resolved.relative_to(self.root).as_posix())
        except ValueError:
            raise GitRevError(f"{path} is outside the git repository at {self.root}") from None

    def read(self, path: Path) -> str | None:
        """The text of ``path`` at this revision, or None when it did not exist there."""
        spec = f"{self.commit}:{self.relative(path)}"
        if _git(self.root, "cat-file", "-e", spec, check=False) is None:
            return None
        data = _git_bytes(self.root, "show", spec)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise GitRevError(f"{self.rev}:{self.relative(path)} is not UTF-8 text") from None

    def files_named(self, folder: Path, name: str) -> list[Path]:
        """Every file called ``name`` below ``folder`` at this revision, as on-disk paths."""
        relative = self.relative(folder)
        listing = _git(self.root, "ls-tree", "-r", "-z", "--name-only", self.commit, "--",
                       "." if str(relative) == "." else str(relative))
        found = [p for p in (listing or "").split("\0") if PurePosixPath(p).name == name]
        return sorted(self.root / p for p in found)


def open_revision(rev: str, where: Path) -> Revision:
    """The revision ``rev`` of the repository holding the folder ``where``.

    Raises:
        GitRevError: git is missing, ``where`` is not in a repository, or ``rev`` names no commit.
    """
    if not rev or rev.startswith("-"):
        raise GitRevError(f"{rev!r} is not a git revision; name a branch, tag or commit")
    folder = where if where.is_dir() else where.parent
    top = _git(folder, "rev-parse", "--show-toplevel", check=False)
    if top is None:
        raise GitRevError(f"{folder} is not inside a git repository; --against needs one"
                          " (or compare two files: pymlc diff OLD NEW)")
    root = Path(top.strip()).resolve()
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if commit is None:
        raise GitRevError(f"unknown git revision {rev!r}; name a branch, tag or commit that"
                          " exists locally (in CI, fetch it first, e.g. git fetch origin main)")
    return Revision(root, rev, commit.strip())


class _GitFailedError(GitRevError):
    """git ran and exited non-zero."""


def _git(cwd: Path, *args: str, check: bool = True) -> str | None:
    try:
        return _git_bytes(cwd, *args).decode("utf-8", errors="replace")
    except _GitFailedError:
        if check:
            raise
        return None


def _git_bytes(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise GitRevError("git is not installed (or not on PATH); --against needs it") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", errors="replace").strip()
        raise _GitFailedError(f"git {' '.join(args)} failed: {message or done.returncode}")
    return done.stdout
