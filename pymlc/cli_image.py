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
    from .image.loadcheck import LoadChecked, LoadCheckError

__all__ = ["TARGET_CHOICES", "register"]

# The Dockerfile's targets (pymlc.image.build.TARGETS, which a test keeps equal); written out
# here so that building the parser does not import the compiler.
TARGET_CHOICES = ("serving", "batch")
EXIT_OK, EXIT_FINDINGS = 0, 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "image", help="build the model's image through the Docker engine",
        description="Build the model's image from a fresh compile of the spec, then start it"
        " once, hardened as it is served (no network, read-only root, the spec's limits), to"
        " check that the model loads there. Files of the spec's folder that look like"
        " secrets (.env, private keys, cloud credentials: pymlc/compiler/shipping.py) never"
        " ship and are named on stderr; there is no switch to ship them: give credentials to"
        " the container at run time, settings through serving.env, and a public certificate"
        " a .crt name. A symbolic link out of the spec's folder is an error.")
    p.add_argument("spec", nargs="?", type=Path, default=Path("pyml.yaml"), metavar="SPEC",
                   help="the spec file, or a folder holding pyml.yaml (default: ./pyml.yaml)")
    p.add_argument("--target", choices=TARGET_CHOICES, default="serving",
                   help="the Dockerfile target to build (default: serving)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="one more tag for the image, besides <repository>:<version> and"
                   " <repository>:spec-<sha> (repeatable)")
    p.add_argument("--no-cache", action="store_true", help="build every step afresh")
    p.add_argument("--no-load-check", action="store_true",
                   help="do not start the image to check that the model loads (a model that"
                   " cannot load then fails only where it is served)")
    p.add_argument("--load-timeout", type=float, default=300.0, metavar="S",
                   help="seconds the model may take to load in the check (default: 300)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every step's output")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=_image)


def _image(args: argparse.Namespace) -> int:
    from .compiler.pipeline import SPEC_FILE, compile_spec
    from .image import BuildError, build_image, connect, left_out_note, model_files
    from .image.loadcheck import LoadCheckError, untag

    spec: Path = args.spec / SPEC_FILE if args.spec.is_dir() else args.spec
    compiled = compile_spec(spec, display=shown(spec))
    files = model_files(compiled)
    if args.format == "text":
        print_diagnostics(compiled.warnings)
        _note_stale(compiled)
        note = left_out_note(files)
        if note:
            say(f"[yellow]note:[/yellow] {escape(note)}")
    client = connect()
    progress = _Progress(verbose=args.verbose) if args.format == "text" else None
    try:
        built = build_image(compiled, target=args.target, extra_tags=args.tag,
                            nocache=args.no_cache, client=client, progress=progress,
                            files=files)
    except BuildError as exc:
        _report_failure(args, exc)
        return EXIT_FINDINGS
    try:
        checked = None if args.no_load_check else _load_check(args, client, compiled, built)
    except LoadCheckError as exc:
        untag(client, built)
        _report_load_failure(args, built, exc)
        return EXIT_FINDINGS
    _report_success(args, built, checked)
    return EXIT_OK


def _load_check(args: argparse.Namespace, client: Any, compiled: Any,
                built: BuiltImage) -> LoadChecked:
    from .image.loadcheck import check_model_loads

    if args.format != "text":
        return check_model_loads(client, built.id, compiled.plan, timeout=args.load_timeout)
    with err.status("loading the model in the image (no network, read-only root) ...",
                    spinner="dots"):
        return check_model_loads(client, built.id, compiled.plan, timeout=args.load_timeout)


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


def _report_success(args: argparse.Namespace, built: BuiltImage,
                    checked: LoadChecked | None) -> None:
    if args.format == "json":
        emit_json({"ok": True, "image": built.id, "target": built.target,
                   "tags": list(built.tags), "size": built.size,
                   "seconds": round(built.seconds, 3),
                   "steps": [{"number": s.number, "instruction": s.instruction,
                              "cached": s.cached, "seconds": round(s.seconds, 3)}
                             for s in built.steps],
                   "left_out": [{"path": i.path, "reason": i.reason} for i in built.left_out],
                   "load_check": None if checked is None else
                   {"ok": True, "seconds": round(checked.seconds, 3)}})
        return
    cached = sum(s.cached for s in built.steps)
    say(f"[green]built[/green] {built.target} image {built.id[7:19]}"
        f" ({built.size / 1e6:.0f} MB) in {built.seconds:.1f} s,"
        f" {cached} of {len(built.steps)} steps cached")
    if checked is not None:
        say(f"  the model loads in the image ({checked.seconds:.1f} s, no network, read-only"
            " root)")
    for tag in built.tags:
        say(f"  tagged {escape(tag)}")


def _report_load_failure(args: argparse.Namespace, built: BuiltImage,
                         exc: LoadCheckError) -> None:
    if args.format == "json":
        emit_json({"ok": False, "error": exc.message, "step": "load check", "log": exc.log,
                   "fix": exc.fix, "image": built.id})
        return
    err.print(f"[red]error:[/red] {built.target} image {built.id[7:19]}: {escape(exc.message)}"
              " (no network, read-only root, the spec's limits); its tags are removed")
    if exc.log:
        err.print(f"[dim]last {len(exc.log)} lines of its output:[/dim]")
        for line in exc.log:
            err.print(f"  {escape(line)}", overflow="ignore", crop=False)
    err.print(f"[bold]fix:[/bold] {escape(exc.fix)}", overflow="ignore", crop=False)


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
