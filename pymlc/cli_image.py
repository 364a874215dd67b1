"""``pymlc image``: build a model's image through the Docker engine (see ``pymlc.image``).

Only argument parsing and terminal output live here; the backend is ``pymlc.image``, imported
when the command runs so that other commands start without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from .console import emit_json, err, print_diagnostics, say, shown

if TYPE_CHECKING:
    from .image import BuildError, BuiltImage, Step

__all__ = ["TARGET_CHOICES", "register"]

# The Dockerfile's targets (pymlc.image.build.TARGETS, which a test keeps equal); written out
# here so that building the parser does not import the compiler.
TARGET_CHOICES = ("serving", "batch")
EXIT_OK, EXIT_FINDINGS = 0, 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("image", help="build the model's image through the Docker engine")
    p.add_argument("spec", nargs="?", type=Path, default=Path("pyml.yaml"), metavar="SPEC",
                   help="the spec file, or a folder holding pyml.yaml (default: ./pyml.yaml)")
    p.add_argument("--target", choices=TARGET_CHOICES, default="serving",
                   help="the Dockerfile target to build (default: serving)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="one more tag for the image, besides <repository>:<version> and"
                   " <repository>:spec-<sha> (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="build every step afresh")
    p.add_argument("-v", "--verbose", action="store_true", help="show every step's output")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_image)


def _image(args: argparse.Namespace) -> int:
    from .compiler.pipeline import SPEC_FILE, compile_spec
    from .image import BuildError, build_image, connect

    spec: Path = args.spec / SPEC_FILE if args.spec.is_dir() else args.spec
    compiled = compile_spec(spec, display=shown(spec))
    if args.format == "text":
        print_diagnostics(compiled.warnings)
        _note_stale(compiled)
    client = connect()
    progress = _Progress(verbose=args.verbose) if args.format == "text" else None
    try:
        built = build_image(compiled, target=args.target, extra_tags=args.tag,
                            nocache=args.no_cache, client=client, progress=progress)
    except BuildError as exc:
        _report_failure(args, exc)
        return EXIT_FINDINGS
    _report_success(args, built)
    return EXIT_OK


def _note_stale(compiled: Any) -> None:
    from .compiler.write import compare_tree

    out = compiled.spec_path.parent / "generated"
    if out.is_dir() and compare_tree(out, compiled.artifacts, shown(out)):
        say(f"[yellow]note:[/yellow] {escape(shown(out))}/ is out of date; the image is built"
            " from a fresh compile of the spec (run `pymlc build` to update the folder)")


class _Progress:
    """One line per finished step; the running step's latest output on a transient status."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.status = err.status("", spinner="dots")

    def step_started(self, step: Step) -> None:
        self.status.update(escape(_heading(step)))
        self.status.start()

    def step_output(self, step: Step, line: str) -> None:
        if self.verbose:
            err.print(f"    {escape(line)}", style="dim", overflow="ignore", crop=False)
        else:
            self.status.update(f"{escape(_heading(step))}\n    [dim]{escape(line[:200])}[/dim]")

    def step_finished(self, step: Step) -> None:
        self.status.stop()
        outcome = f"[dim]{'cached':>7}[/dim]" if step.cached else f"{step.seconds:5.1f} s"
        err.print(f"{outcome}  {escape(_heading(step))}", no_wrap=True, overflow="ellipsis",
                  highlight=False)


def _heading(step: Step) -> str:
    width = len(str(step.total))
    return f"[{step.number:>{width}}/{step.total}] {' '.join(step.instruction.split())}"


def _report_success(args: argparse.Namespace, built: BuiltImage) -> None:
    if args.format == "json":
        emit_json({"ok": True, "image": built.id, "target": built.target,
                   "tags": list(built.tags), "size": built.size,
                   "seconds": round(built.seconds, 3),
                   "steps": [{"number": s.number, "instruction": s.instruction,
                              "cached": s.cached, "seconds": round(s.seconds, 3)}
                             for s in built.steps]})
        return
    cached = sum(s.cached for s in built.steps)
    say(f"[green]built[/green] {built.target} image {built.id[7:19]}"
        f" ({built.size / 1e6:.0f} MB) in {built.seconds:.1f} s,"
        f" {cached} of {len(built.steps)} steps cached")
    for tag in built.tags:
        say(f"  tagged {escape(tag)}")


def _report_failure(args: argparse.Namespace, exc: BuildError) -> None:
    step = str(exc.step) if exc.step else None
    if args.format == "json":
        emit_json({"ok": False, "error": exc.message, "step": step, "log": exc.tail})
        return
    err.print(f"[red]error:[/red] image build failed at {escape(step or 'the start')}")
    if exc.tail:
        err.print(f"[dim]last {len(exc.tail)} lines of its output:[/dim]")
        for line in exc.tail:
            err.print(f"  {escape(line)}", overflow="ignore", crop=False)
    err.print(f"[red]{escape(exc.message)}[/red]")
