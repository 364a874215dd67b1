"""``pymlc verify``: the spec's examples in-process, through the serving container and through
the batch container, side by side (see ``pymlc.verify``).

Only argument parsing and terminal output live here. The report table goes to stdout, progress
to stderr; ``--format json`` prints the report as JSON instead. Exit 0 when every path agrees
within the spec's tolerance (and with ``examples.output``), else 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from rich.markup import escape

from .console import emit_json, err, print_diagnostics, say, shown

if TYPE_CHECKING:
    from .verify import Report

__all__ = ["register"]

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXIT_OK, EXIT_FINDINGS = 0, 1


def register(sub: _SubParsers) -> None:
    """Add the ``verify`` command to the ``pymlc`` parser."""
    p = sub.add_parser(
        "verify", help="run the examples in-process, in the serving and in the batch container",
        description="Run the spec's examples three ways: in-process, through the serving"
        " container over its Unix socket, and through the batch container's Spark job; compare"
        " them (and examples.output) within the spec's tolerance. Builds the images it needs.")
    p.add_argument("spec", nargs="?", type=Path, default=Path("pyml.yaml"), metavar="SPEC",
                   help="the spec file, or a folder holding pyml.yaml (default: ./pyml.yaml)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds each container may take to get ready or finish (default: 300)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from .compiler.pipeline import SPEC_FILE, compile_spec
    from .verify import ExamplesError, verify

    spec: Path = args.spec / SPEC_FILE if args.spec.is_dir() else args.spec
    compiled = compile_spec(spec, display=shown(spec))
    text = args.format == "text"
    if text:
        print_diagnostics(compiled.warnings)
    try:
        report = verify(compiled, timeout=args.timeout,
                        say=(lambda line: say(f"[dim]{escape(line)}[/dim]")) if text else None)
    except ExamplesError as exc:
        if text:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
        else:
            emit_json({"ok": False, "error": str(exc)})
        return EXIT_FINDINGS
    if text:
        _print(report)
    else:
        emit_json(report.to_json())
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _print(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    from .verify import format_value

    table = Table("row", "field", *report.columns, "match",
                  title=f"{report.name} {report.version}: examples"
                        f" (rtol={report.rtol:g}, atol={report.atol:g})")
    for path in report.paths:
        if path.outputs is None:
            state = "not supported" if path.unsupported else "failed"
            table.columns[2 + report.columns.index(path.name)].header = f"{path.name}\n({state})"
    for row in report.rows:
        cells = [_cell(report, name, format_value(row.values[name])) for name in report.columns]
        mark = "[green]yes[/green]" if row.match else "[red]NO[/red]"
        table.add_row(str(row.row), escape(row.field), *cells, mark)
    Console(highlight=False).print(table)
    for note in report.notes:
        say(f"[yellow]note:[/yellow] {escape(note)}")
    for problem in report.problems:
        err.print(f"[red]error:[/red] {escape(problem)}", overflow="ignore", crop=False)
    if report.ok:
        verified = [p.name for p in report.paths if p.outputs is not None]
        say(f"[green]verified[/green]: {report.name} {report.version}: {len(report.rows)}"
            f" value(s) agree across {', '.join(verified)}"
            + (" and the expected output" if "expected" in report.columns else ""))
    else:
        say(f"[red]verification failed[/red]: {report.name} {report.version}:"
            f" {len(report.problems)} problem(s)")


def _cell(report: Report, column: str, text: str) -> str:
    path = next((p for p in report.paths if p.name == column), None)
    if path is not None and path.unsupported:
        return "[yellow]not supported[/yellow]"
    if path is not None and path.error:
        return "[red]error[/red]"
    return escape(text)
