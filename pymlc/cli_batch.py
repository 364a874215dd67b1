"""``pymlc batch``: run the generated Spark job, a SQL query in and a Hive table out.

The spec is compiled in memory; its generated ``batch_job.py`` (from the spec's ``generated/``
when that is up to date, else from a temporary folder) runs in a child Python with
``PYML_MODEL_ROOT`` set to the spec's folder and this interpreter as Spark's Python, so the job
is exactly the one ``spark-submit`` runs on a cluster. Its progress streams through unchanged.

The job dies with this command: SIGTERM, SIGINT and SIGHUP are passed on to it (it stops
cleanly, never swapping its table), and if this command is killed outright the kernel sends the
job SIGTERM (``PR_SET_PDEATHSIG``). The job runs in a session of its own, so a terminal's Ctrl-C
reaches it once, through this command. Exit codes are the job's: 0 ok; 1 invalid query or
failed job (the table is unchanged); 2 usage; 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .console import say, shown

if TYPE_CHECKING:
    from .compiler.pipeline import Compiled

__all__ = ["register"]

_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def register(sub: _SubParsers) -> None:
    """Add the ``batch`` command to the ``pymlc`` parser."""
    p = sub.add_parser(
        "batch", help="score a SQL query's rows into a table, with Spark + embedded Hive",
        description="Run the model's batch job: the query's rows through the model into"
                    " DB.TABLE (or one partition of it), atomically (a failed or stopped job"
                    " leaves the table as it was).",
        epilog="example: pymlc batch --query \"SELECT * FROM parquet.`trips.parquet`\""
               " --output-table scores.fares")
    p.add_argument("spec", nargs="?", type=Path, default=Path("pyml.yaml"), metavar="SPEC",
                   help="the model's spec (default: ./pyml.yaml)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="Spark SQL query whose rows are scored")
    source.add_argument("--query-file", type=Path, metavar="FILE", help="file holding the query")
    p.add_argument("--output-table", required=True, metavar="DB.TABLE")
    p.add_argument("--partition", action="append", metavar="KEY=VALUE",
                   help="write one static partition of the table, partitioned by these keys"
                        " (repeatable; created on first use)")
    p.add_argument("--mode", choices=("overwrite", "append"),
                   help="default: the spec's batch.write_mode")
    p.add_argument("--warehouse", type=Path, metavar="DIR",
                   help="local warehouse + metastore folder (default: ./.pyml-warehouse)")
    p.add_argument("--master", help="Spark master, e.g. spark://host:7077 (default: local[*])")
    p.set_defaults(handler=_batch)


def _batch(args: argparse.Namespace) -> int:
    from .compiler.pipeline import compile_spec

    compiled = compile_spec(args.spec, display=shown(args.spec))
    with _generated(compiled) as folder:
        job = folder / compiled.plan.layout.batch_job
        command = [sys.executable, str(job), *_job_arguments(args)]
        env = {
            **os.environ,
            "PYML_MODEL_ROOT": str(compiled.spec_path.parent.resolve()),
            "PYSPARK_PYTHON": sys.executable,
        }
        if (args.master or "local").startswith("local"):
            env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        return _run_job(command, env)


def _run_job(command: list[str], env: dict[str, str]) -> int:
    """Run the job as a child that dies with this process; pass stop signals on to it."""
    job = subprocess.Popen(command, env=env, start_new_session=True,
                           preexec_fn=_die_with(os.getpid()))
    previous = {signum: signal.signal(signum, _forward(job)) for signum in _FORWARDED}
    try:
        return job.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if job.poll() is None:  # this command is leaving early: the job goes too
            job.terminate()
            job.wait()


def _forward(job: subprocess.Popen[bytes]) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)  # the job's clean stop, whatever the signal
    return handler


def _die_with(parent: int) -> Callable[[], None]:
    """In the child, before the job starts: SIGTERM when ``parent`` dies (Linux)."""
    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(128 + signal.SIGTERM)
    return arrange


def _job_arguments(args: argparse.Namespace) -> list[str]:
    given = {
        "--query": args.query,
        "--query-file": args.query_file,
        "--output-table": args.output_table,
        "--mode": args.mode,
        "--warehouse": args.warehouse,
        "--master": args.master,
    }
    arguments = [item for flag, value in given.items() if value is not None
                 for item in (flag, str(value))]
    return arguments + [item for value in args.partition or () for item in ("--partition", value)]


@contextmanager
def _generated(compiled: Compiled) -> Iterator[Path]:
    """The spec's ``generated/`` if it matches a fresh build, else a temporary build."""
    from .compiler.write import compare_tree, write_tree

    committed = compiled.spec_path.parent / "generated"
    if committed.is_dir() and not compare_tree(committed, compiled.artifacts, str(committed)):
        yield committed
        return
    say(f"{shown(committed)} is missing or out of date; running a fresh build of the job")
    with tempfile.TemporaryDirectory(prefix="pymlc-batch-") as tmp:
        write_tree(Path(tmp), compiled.artifacts)
        yield Path(tmp)
