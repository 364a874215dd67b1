"""``pymlc diff``: the API changes between two specs, or between a spec and a git revision.

``pymlc diff OLD NEW`` compares two files; ``pymlc diff [SPEC|DIR] --against REV`` compares the
working tree with the spec (and ``pyml.lock``) as committed at REV, each spec below DIR on its
own. Exit 0 when nothing breaks (or the major version was bumped: breaking changes are then
warnings), 1 on a breaking change or an invalid spec, 2 on a usage error (e.g. a bad revision).
Only the API is compared, so the files a spec names need not exist at either side.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from rich.markup import escape

from .console import emit_json, err

# The compiler is imported where it is used: `pymlc --help` and the other commands do not pay
# for pydantic and the emitters through this module.
if TYPE_CHECKING:
    from rich.table import Table

    from .compiler.diff import Change
    from .compiler.gitrev import Revision
    from .compiler.lock import Lock
    from .compiler.spec import Spec

__all__ = ["register"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
# Diagnostics about files on disk that a spec names; irrelevant to its API, and the files of a
# past revision are not checked out anyway.
_FILESYSTEM_CODES = frozenset({"E301", "E302", "E304"})

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(sub: _SubParsers) -> None:
    """Add the ``diff`` command to the ``pymlc`` parser."""
    p = sub.add_parser(
        "diff", help="API changes between two specs; exit 1 on a breaking change",
        description="Classify every change of a model's API as breaking or compatible.",
        epilog="examples: pymlc diff old/pyml.yaml pyml.yaml | pymlc diff --against origin/main"
               " | pymlc diff models/ --against HEAD~1")
    p.add_argument("specs", nargs="*", type=Path, metavar="SPEC",
                   help="OLD NEW; or, with --against, one spec or folder (default: ./pyml.yaml)")
    p.add_argument("--against", metavar="GIT_REV",
                   help="compare with the spec and lock as committed at this git revision")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_diff)


@dataclass(frozen=True)
class _Side:
    spec: Spec
    lock: Lock | None
    shown: str


@dataclass(frozen=True)
class _Report:
    shown: str
    old: _Side | None
    new: _Side | None
    changes: tuple[Change, ...]

    @property
    def name(self) -> str:
        side = self.new or self.old
        return side.spec.name if side else ""

    @property
    def bumped(self) -> bool:
        from .compiler.diff import major_bumped

        return self.new is not None and major_bumped(self.old.spec if self.old else None,
                                                     self.new.spec)

    @property
    def breaking(self) -> list[Change]:
        return [c for c in self.changes if c.breaking]

    @property
    def fails(self) -> bool:
        return bool(self.breaking) and not self.bumped


def _diff(args: argparse.Namespace) -> int:
    from .compiler.gitrev import GitRevError

    try:
        reports = _reports(args)
    except GitRevError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return EXIT_USAGE
    except _UsageError as exc:
        err.print(f"[red]usage error:[/red] {escape(str(exc))}")
        return EXIT_USAGE
    if args.format == "json":
        emit_json({"ok": not any(r.fails for r in reports),
                   "models": [_to_json(r) for r in reports]})
    else:
        _print(reports)
    return EXIT_FINDINGS if any(r.fails for r in reports) else EXIT_OK


class _UsageError(Exception):
    pass


def _reports(args: argparse.Namespace) -> list[_Report]:
    from .compiler.gitrev import open_revision
    from .compiler.pipeline import SPEC_FILE

    if args.against is None:
        if len(args.specs) != 2:
            raise _UsageError("name two specs, OLD and NEW (or one spec with --against GIT_REV)")
        old_path, new_path = args.specs
        old, new = _collect([lambda: _from_disk(old_path), lambda: _from_disk(new_path)])
        return [_report(_shown(new_path), old, new)]
    if len(args.specs) > 1:
        raise _UsageError("with --against, name at most one spec or folder")
    target = args.specs[0] if args.specs else Path(SPEC_FILE)
    revision = open_revision(args.against, _existing(target))
    if target.is_dir():
        return _against_folder(revision, target)
    if not target.exists():
        [was] = _collect([partial(_from_revision, revision, target)])
        if was is not None:
            return [_report(_shown(target), was, None)]
    old, new = _collect([partial(_from_revision, revision, target), partial(_from_disk, target)])
    return [_report(_shown(target), old, new)]


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: where to look for the git repository."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _against_folder(revision: Revision, folder: Path) -> list[_Report]:
    from .compiler.errors import Diagnostic, Level, SpecError
    from .compiler.pipeline import SPEC_FILE, find_specs

    current = list(find_specs([folder]))
    loaders: list[_Loader] = [partial(_from_disk, p) for p in current]
    loaders += [partial(_from_revision, revision, p) for p in current]
    # Specs committed at REV whose file is gone: removed, or moved to another folder.
    gone = [p for p in revision.files_named(folder, SPEC_FILE) if not p.exists()]
    loaders += [partial(_from_revision, revision, p) for p in gone]
    sides = _collect(loaders)
    new_sides, old_sides, gone_sides = (sides[:len(current)], sides[len(current):2 * len(current)],
                                        sides[2 * len(current):])
    if not current and not gone:
        raise SpecError([Diagnostic(_shown(folder), (), None, Level.ERROR, "E000",
                                    f"no {SPEC_FILE} below this folder, now or at"
                                    f" {revision.rev}; name a spec or a folder of models")])
    moved = {s.spec.name: s for s in gone_sides if s is not None}
    reports = []
    for path, new, old in zip(current, new_sides, old_sides, strict=True):
        if old is None and new is not None:
            old = moved.pop(new.spec.name, None)
        reports.append(_report(_shown(path), old, new))
    reports += [_report(s.shown, s, None) for s in moved.values()]
    return reports


def _report(shown: str, old: _Side | None, new: _Side | None) -> _Report:
    from .compiler.diff import Change, diff_specs, proto_package

    if new is None:
        assert old is not None
        removed = Change("", "model-removed", True, f"model {old.spec.name!r} removed"
                         f" ({old.shown}); clients of {proto_package(old.spec)} break")
        return _Report(shown, old, None, (removed,))
    changes = diff_specs(old.spec if old else None, new.spec,
                         old_lock=old.lock if old else None, new_lock=new.lock)
    return _Report(shown, old, new, tuple(changes))


# --- loading ------------------------------------------------------------------------------

_Loader = Callable[[], "_Side | None"]


def _collect(loaders: list[_Loader]) -> list[_Side | None]:
    """Run every loader, gathering all diagnostics before raising them together."""
    from .compiler.errors import Diagnostic, SpecError

    sides: list[_Side | None] = []
    problems: list[Diagnostic] = []
    for load in loaders:
        try:
            sides.append(load())
        except SpecError as exc:
            problems.extend(exc.diagnostics)
            sides.append(None)
    if problems:
        raise SpecError(problems)
    return sides


def _from_disk(path: Path) -> _Side:
    from .compiler.errors import Diagnostic, Level, SpecError
    from .compiler.lock import LOCK_FILE, parse_lock

    shown = _shown(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SpecError([Diagnostic(shown, (), None, Level.ERROR, "E000",
                                    f"cannot read the spec: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(shown, (), None, Level.ERROR, "E001",
                                    f"the file is not UTF-8 (byte {exc.start})")]) from None
    lock_path = path.parent / LOCK_FILE
    lock = None
    if lock_path.is_file():
        lock = parse_lock(lock_path.read_text(encoding="utf-8"), _shown(lock_path))
    return _Side(_spec(text, shown, path.parent), lock, shown)


def _from_revision(revision: Revision, path: Path) -> _Side | None:
    from .compiler.lock import LOCK_FILE, parse_lock

    text = revision.read(path)
    if text is None:
        return None
    shown = f"{revision.rev}:{revision.relative(path)}"
    lock_path = path.parent / LOCK_FILE
    lock_text = revision.read(lock_path)
    lock = None
    if lock_text is not None:
        lock = parse_lock(lock_text, f"{revision.rev}:{revision.relative(lock_path)}")
    return _Side(_spec(text, shown, path.parent), lock, shown)


def _spec(text: str, shown: str, root: Path) -> Spec:
    from .compiler.errors import SpecError
    from .compiler.load import parse_document
    from .compiler.spec import Spec
    from .compiler.validate import validate_document

    doc = parse_document(text, shown)
    try:
        spec, _warnings = validate_document(doc, root)
        return spec
    except SpecError as exc:
        problems = [d for d in exc.diagnostics if d.code not in _FILESYSTEM_CODES]
        if problems:
            raise SpecError(problems) from None
        return Spec.model_validate(doc.data)


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# --- output -------------------------------------------------------------------------------

def _to_json(report: _Report) -> dict[str, object]:
    return {
        "spec": report.shown,
        "name": report.name,
        "old": report.old.shown if report.old else None,
        "old_version": report.old.spec.version if report.old else None,
        "new_version": report.new.spec.version if report.new else None,
        "major_bump": report.bumped,
        "breaking": len(report.breaking),
        "ok": not report.fails,
        "changes": [c.to_json() for c in report.changes],
    }


def _print(reports: list[_Report]) -> None:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    for report in reports:
        out.print(_title(report))
        if report.changes:
            out.print(_table(report))
        else:
            out.print("  no changes")
        out.print(_verdict(report))
        out.print()


def _title(report: _Report) -> str:
    old = report.old.spec.version if report.old else "(none)"
    new = report.new.spec.version if report.new else "(removed)"
    return f"[bold]{escape(report.name)}[/bold] {old} -> {new}  [dim]{escape(report.shown)}[/dim]"


def _table(report: _Report) -> Table:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("field", no_wrap=True)
    table.add_column("change", no_wrap=True)
    table.add_column("detail", overflow="fold")
    label = "[yellow]warning[/yellow]" if report.bumped else "[red]BREAKING[/red]"
    for change in sorted(report.changes, key=lambda c: (not c.breaking, c)):
        table.add_row(label if change.breaking else "[green]ok[/green]",
                      escape(change.path or "(model)"), change.kind, escape(change.message))
    return table


def _verdict(report: _Report) -> str:
    from .compiler.diff import proto_package

    count = len(report.breaking)
    plural = "s" if count != 1 else ""
    if report.bumped and report.new is not None and report.old is not None:
        return (f"[yellow]major version bumped ({report.old.spec.version} ->"
                f" {report.new.spec.version}): {proto_package(report.new.spec)} is a new service;"
                f" {count} breaking change{plural} listed as warning{plural}[/yellow]")
    if count:
        return (f"[red]{count} breaking change{plural}[/red]: keep the old API, or bump the major"
                " version to publish a new service")
    return "[green]no breaking changes[/green]"
