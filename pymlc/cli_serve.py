"""``pymlc serve``, ``pymlc predict`` and the examples step of ``pymlc validate``.

``serve`` compiles the spec in memory and writes the generated files to a temporary folder, so
a stale ``generated/`` can never be served; then it runs the runtime's server in this process
(``runtime_stub.serve.main``, exactly what the image runs) with ``PYML_MODEL_CONFIG`` and
``PYML_MODEL_ROOT`` set. No child process: a ``pymlc serve`` killed with SIGKILL leaves no
orphan serving on its socket (the next ``pymlc serve`` replaces the stale socket file). The
temporary folder is removed as soon as the model and its stubs are loaded, before the server
listens, so a kill while serving leaves no folder behind either. ``predict`` is a client of
the typed per-model service, with stubs from the same fresh compile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .console import emit_json, err, say, shown

if TYPE_CHECKING:
    from .compiler.pipeline import Compiled

__all__ = ["check_examples", "register"]

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
EXIT_OK, EXIT_FINDINGS = 0, 1


def register(sub: _SubParsers) -> None:
    """Add the ``serve`` and ``predict`` commands to the ``pymlc`` parser."""
    p = sub.add_parser("serve", help="serve the model locally over gRPC (no Docker needed)",
                       description="Serve the model on a Unix socket and/or TCP port: the typed"
                       " service, Open Inference Protocol v2, health and reflection. With"
                       " neither --socket nor --port, the spec's serving settings are used.")
    _add_spec(p)
    p.add_argument("--socket", metavar="PATH", help="Unix domain socket to listen on")
    p.add_argument("--port", type=int, metavar="N", help="TCP port to listen on (0 = any free)")
    p.add_argument("--host", default="127.0.0.1", help="TCP interface (default: 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, metavar="N",
                   help="Prometheus /metrics on this loopback port")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="debug logs one line per request")
    p.set_defaults(handler=_serve)
    p = sub.add_parser("predict", help="send an input file to a running server",
                       description="Score FILE (JSON, CSV, Parquet or .npz) with a running"
                       " server through the model's typed gRPC service.")
    _add_spec(p)
    p.add_argument("--input", required=True, type=Path, metavar="FILE")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--socket", metavar="PATH", help="the server's Unix socket")
    target.add_argument("--target", metavar="HOST:PORT", help="the server's TCP address")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default: 30)")
    p.set_defaults(handler=_predict)


def _add_spec(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", type=Path, default=Path("pyml.yaml"), metavar="SPEC",
                   help="the model's spec (default: ./pyml.yaml)")


@contextmanager
def _generated(spec: Path) -> Iterator[tuple[Compiled, Path]]:
    """The spec compiled now, its files written to a temporary folder (removed after)."""
    from .compiler.pipeline import compile_spec
    from .compiler.write import write_tree

    compiled = compile_spec(spec, display=shown(spec))
    with tempfile.TemporaryDirectory(prefix=f"pymlc-{compiled.plan.name}-") as folder:
        write_tree(Path(folder), compiled.artifacts)
        yield compiled, Path(folder)


# --- serve --------------------------------------------------------------------------------

def _serve(args: argparse.Namespace) -> int:
    from .compiler.pipeline import compile_spec
    from .compiler.write import write_tree
    from .runtime_stub import serve

    compiled = compile_spec(args.spec, display=shown(args.spec))
    folder = Path(tempfile.mkdtemp(prefix=f"pymlc-{compiled.plan.name}-"))
    try:
        write_tree(folder, compiled.artifacts)
        os.environ["PYML_MODEL_CONFIG"] = str(folder / "model.json")
        os.environ["PYML_MODEL_ROOT"] = str(compiled.spec_path.parent.resolve())
        return serve.main(_serve_flags(args), loaded=lambda: shutil.rmtree(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve_flags(args: argparse.Namespace) -> list[str]:
    given = {"--socket": args.socket, "--port": args.port, "--metrics-port": args.metrics_port,
             "--log-level": args.log_level}
    flags = [item for flag, value in given.items() if value is not None
             for item in (flag, str(value))]
    return [*flags, "--host", args.host]


# --- predict ------------------------------------------------------------------------------

def _predict(args: argparse.Namespace) -> int:
    from .client import Client, ClientError
    from .runtime_stub import checks, codecs
    from .runtime_stub.config import ModelConfig

    target = f"unix:{args.socket}" if args.socket else args.target
    with _generated(args.spec) as (_compiled, folder):
        config = ModelConfig.load(folder / "model.json")
    try:
        if config.kind == "dataframe":
            specs = checks.column_specs(config.inputs)
            data: Any = checks.conform_columns(codecs.read_columns(args.input, specs), specs)
        else:
            tensor_specs = checks.tensor_specs(config.inputs)
            data = codecs.read_tensors(args.input, tensor_specs)
        with Client.for_config(target, config, timeout=args.timeout) as client:
            result = client.predict(data)
    except (checks.ContractError, ClientError) as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        return EXIT_FINDINGS
    _show(result, args.format)
    return EXIT_OK


def _show(result: Any, form: str) -> None:
    import pandas as pd

    from .runtime_stub.codecs import frame_to_records, tensors_to_json

    if isinstance(result, pd.DataFrame):
        records = frame_to_records(result)
        if form == "json":
            emit_json(records)
            return
        _table(list(result.columns), [[r[c] for c in result.columns] for r in records])
        return
    if form == "json":
        emit_json(tensors_to_json(result))
        return
    _table(["output", "dtype", "shape", "values"],
           [[name, str(a.dtype), str(list(a.shape)), _brief(a)] for name, a in result.items()])


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*("null" if v is None else str(v) for v in row))
    Console().print(table)


def _brief(array: Any) -> str:
    text = json.dumps(array.tolist())
    return text if len(text) <= 120 else text[:117] + "..."


# --- validate: the examples ---------------------------------------------------------------

def check_examples(compiled: Sequence[Compiled], *, text: bool) -> list[dict[str, Any]]:
    """Import each model and run its examples in-process through the runtime's ``Predictor``.

    Args:
        compiled: the specs, compiled.
        text: print a line per model for people (else stay quiet for ``--format json``).

    Returns:
        One report per model that failed: ``{"name", "spec", "problems"}``; empty if all passed.
    """
    failures = []
    for c in compiled:
        problems, summary = _example_problems(c)
        if text:
            for line in problems:
                err.print(f"[red]{c.plan.name}:[/red] {line}", markup=True, highlight=False)
            if summary and not problems:
                say(f"[green]examples[/green]: {c.plan.name}: {summary}")
        if problems:
            failures.append({"name": c.plan.name, "spec": shown(c.spec_path),
                             "problems": problems})
    return failures


def _example_problems(compiled: Compiled) -> tuple[list[str], str]:
    from .api import ExamplesError, Model

    try:
        result = Model(compiled).check_examples()
    except ExamplesError as exc:
        return list(exc.problems), ""
    if result is None:
        return [], ""
    verdict = "match the expected output" if result.compared else "scored (no expected output)"
    return [], f"{result.rows} row(s) {verdict}"
