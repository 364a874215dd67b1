"""The ``pymlc`` command line: parses arguments and calls the compiler; no logic of its own.

Exit codes: 0 ok; 1 findings (invalid spec, drift, breaking change, failed job); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from .cli_batch import register as _register_batch
from .cli_diff import register as _register_diff
from .cli_gateway import register as _register_gateway
from .cli_image import register as _register_image
from .cli_serve import register as _register_serve
from .cli_verify import register as _register_verify
from .compiler.errors import Diagnostic, Level, PymlcError, SpecError
from .console import emit_json, err, print_diagnostics, say, shown

if TYPE_CHECKING:
    from .compiler.pipeline import Compiled
    from .compiler.write import Drift

__all__ = ["main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except SpecError as exc:
        _report(args, exc)
        return EXIT_FINDINGS
    except PymlcError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return EXIT_FINDINGS
    except OSError as exc:  # a path the user named cannot be read or written
        where = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/red] {escape(f'cannot use{where}: {exc.strerror or exc}')};"
                  " check the path")
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def _report(args: argparse.Namespace, exc: SpecError) -> None:
    if getattr(args, "format", "text") == "json":
        emit_json({"ok": False, "diagnostics": [d.to_json() for d in exc.diagnostics]})
    else:
        print_diagnostics(exc.diagnostics)


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="pymlc", description="Compile pyml.yaml model specs"
                                     " into images, gRPC services and Spark jobs.")
    parser.add_argument("--version", action="version", version=f"pymlc {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def _add_targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", type=Path, metavar="SPEC|DIR",
                   help="spec files, or folders searched for pyml.yaml (default: ./pyml.yaml)")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: generated/ beside"
                   " each spec; with a folder or several specs, OUT/<name>/)")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _register_build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build", help="write the generated artifacts (deterministic)")
    _add_targets(p)
    p.set_defaults(handler=_build)
    p = sub.add_parser("check", help="exit 1 if committed artifacts differ from a fresh build")
    _add_targets(p)
    p.set_defaults(handler=_check)
    p = sub.add_parser("validate", help="check a spec without writing anything")
    _add_targets(p)
    p.set_defaults(handler=_validate)


def _register_init(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="scaffold a new model folder")
    p.add_argument("name", help="model name: lowercase letters, digits and '-'")
    p.add_argument("--kind", choices=("dataframe", "tensor"), default="dataframe")
    p.set_defaults(handler=_init)


def _register_schema(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of pyml.yaml (for editors)")
    p.set_defaults(handler=_schema)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _register_init, _register_build, _register_schema,
    _register_diff,
    _register_image,
    _register_batch,
    _register_serve,
    _register_gateway,
    _register_verify,
]


# --- handlers -----------------------------------------------------------------------------

def _compile_targets(args: argparse.Namespace) -> list[Compiled]:
    from .compiler.pipeline import SPEC_FILE, compile_spec, ensure_no_duplicates, find_specs

    targets = args.targets or [Path(SPEC_FILE)]
    specs = list(find_specs(targets))
    if not specs:
        raise SpecError([_no_spec(targets)])
    compiled: list[Compiled] = []
    problems: list[Diagnostic] = []
    for spec in specs:
        try:
            compiled.append(compile_spec(spec, display=shown(spec)))
        except SpecError as exc:
            problems.extend(exc.diagnostics)
    warnings = [w for c in compiled for w in c.warnings]
    if args.strict:
        problems.extend(_promote(warnings))
    elif warnings and args.format == "text":
        print_diagnostics(warnings)
    if problems:
        raise SpecError(problems)
    ensure_no_duplicates(compiled)
    return compiled


def _promote(warnings: list[Diagnostic]) -> list[Diagnostic]:
    from dataclasses import replace

    return [replace(w, level=Level.ERROR) for w in warnings]


def _no_spec(targets: list[Path]) -> Diagnostic:
    shown = ", ".join(str(t) for t in targets)
    return Diagnostic(shown, (), None, Level.ERROR, "E000",
                      "no pyml.yaml found; name a spec file or a folder that contains one"
                      " (or create one with `pymlc init NAME`)")


def _out_dir(compiled: Compiled, out: Path | None, many: bool) -> Path:
    if out is None:
        return compiled.spec_path.parent / "generated"
    return out / compiled.plan.name if many else out


def _many(args: argparse.Namespace, compiled: list[Compiled]) -> bool:
    # A folder target always means OUT/<name>/, even while it holds one spec: adding a second
    # model must not move the first one's files.
    return len(compiled) > 1 or any(t.is_dir() for t in args.targets)


def _routes(args: argparse.Namespace, compiled: list[Compiled]) -> tuple[Path, str] | None:
    # A folder (or several specs) is a fleet of models: its routes file is what
    # `pymlc gateway` serves (see pymlc/compiler/routes.py).
    from .compiler.routes import render_routes, routes_path

    if not _many(args, compiled):
        return None
    path = routes_path(args.targets, args.out)
    return path, render_routes([(c.plan, c.spec_path) for c in compiled], path)


def _build(args: argparse.Namespace) -> int:
    from .compiler.write import write_file, write_tree

    compiled = _compile_targets(args)
    report = []
    for c in compiled:
        out = _out_dir(c, args.out, _many(args, compiled))
        changed = write_tree(out, c.artifacts)
        if write_file(c.lock_path, c.lock_text):
            changed.append(c.lock_path)
        report.append({"name": c.plan.name, "spec": shown(c.spec_path), "out": shown(out),
                       "changed": sorted(shown(p) for p in changed)})
        if args.format == "text":
            say(f"[green]built[/green] {c.plan.name} {c.plan.version} -> {shown(out)}/"
                f" ({len(changed)} file{'s' if len(changed) != 1 else ''} changed)")
    routes = _routes(args, compiled)
    if routes:
        write_file(*routes)
        if args.format == "text":
            say(f"[green]routes[/green] of {len(compiled)} models -> {shown(routes[0])}")
    if args.format == "json":
        emit_json({"ok": True, "models": report,
                   **({"routes": shown(routes[0])} if routes else {})})
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from .compiler.write import compare_file, compare_tree

    compiled = _compile_targets(args)
    stale: list[dict[str, object]] = []
    for c in compiled:
        out = _out_dir(c, args.out, _many(args, compiled))
        drifts = compare_tree(out, c.artifacts, shown(out))
        lock = compare_file(c.lock_path, c.lock_text, shown(c.lock_path))
        drifts += [lock] if lock else []
        if args.format == "text":
            for d in drifts:
                _print_drift(d)
        if drifts:
            stale.append({"name": c.plan.name, "spec": shown(c.spec_path),
                          "files": [{"path": shown(d.path), "status": d.status, "diff": d.diff}
                                    for d in drifts]})
    routes = _routes(args, compiled)
    drift = compare_file(routes[0], routes[1], shown(routes[0])) if routes else None
    if drift and args.format == "text":
        _print_drift(drift)
    if args.format == "json":
        routes_drift = {"routes": {"path": shown(drift.path), "status": drift.status,
                                   "diff": drift.diff}} if drift else {}
        emit_json({"ok": not stale and not drift, "checked": len(compiled), "stale": stale,
                   **routes_drift})
    elif stale or drift:
        say(f"[red]{len(stale)} of {len(compiled)} model(s){' and the routes file' * bool(drift)}"
            " out of date[/red]; run `pymlc build` and commit the result")
    else:
        say(f"[green]ok[/green]: {len(compiled)} model(s) up to date")
    return EXIT_FINDINGS if stale or drift else EXIT_OK


def _print_drift(drift: Drift) -> None:
    err.print(f"[red]{drift.status}[/red]: {escape(shown(drift.path))}")
    sys.stdout.write(drift.diff)


def _validate(args: argparse.Namespace) -> int:
    from .cli_serve import check_examples

    compiled = _compile_targets(args)
    for c in compiled:
        if args.format == "text":
            say(f"[green]valid[/green]: {shown(c.spec_path)} ({c.plan.name} {c.plan.version})")
    failed = check_examples(compiled, text=args.format == "text")
    if args.format == "json":
        failures = {"examples_failed": failed} if failed else {}
        emit_json({"ok": not failed, "models": [c.plan.name for c in compiled], **failures})
    return EXIT_FINDINGS if failed else EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from .compiler.scaffold import scaffold

    created = scaffold(Path(args.name), args.name, args.kind)
    for path in created:
        say(f"created {shown(path)}")
    say(f"next: cd {args.name} && pymlc validate && pymlc build")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from .compiler.spec_schema import spec_json_schema

    sys.stdout.write(json.dumps(spec_json_schema(), indent=2, sort_keys=True) + "\n")
    return EXIT_OK
