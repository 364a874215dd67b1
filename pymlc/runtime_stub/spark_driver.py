"""The batch driver: a SQL query in, the model's predictions out, into a table, atomically.

The generated ``batch_job.py`` calls :func:`main`. One data path, the same on every master:

1. start Spark (``local[*]``, ``--master URL``, or whatever spark-submit provides);
2. analyse the query (its schema only, no Spark job) and check it against the spec's inputs,
   its passthrough columns and the destination (table, or ``--partition`` of it): every
   problem reported at once, exit 1, nothing written;
3. Spark reads the query; the inputs are cast up to the spec's types in Spark; ``mapInArrow``
   hands Arrow batches of ``batch.rows_per_batch`` rows to the Python workers, which load the
   model once each (warmed up by a tiny background job while step 2 runs) and score every
   batch through the server's own ``Predictor`` call (``predict_columns``, or
   ``predict_tensors`` for tensor models: one query row per sample, see ``spark_tensor``),
   passthrough columns beside. How many tasks is Spark's affair (its file splitting and
   adaptive query execution settings);
4. Spark's own writer writes a staging table, every query row is checked to have reached it
   (counted by the write job itself), and the staging table is swapped in (``spark_swap``).

Exit codes: 0 ok; 1 invalid query or failed job (the destination is unchanged); 2 usage error;
128 + N when stopped by signal N (SIGTERM: 143) before the swap (the destination is unchanged).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ROOT_ENV, ConfigError, ModelConfig, model_root_from_env
from .spark_debris import BusyError
from .spark_dest import (
    PartitionSpec,
    TableInfo,
    check_destination,
    describe_partition,
    parse_partition,
)
from .spark_output import WarmUp, analyse, job_output
from .spark_plan import PlanError
from .spark_session import (
    DEFAULT_WAREHOUSE,
    Progress,
    WarehouseBusy,
    WarehouseLock,
    elapsed,
    job_log,
    master_of,
    owns_catalog,
    start_session,
    warn,
)
from .spark_stop import JobStopped, Stopper
from .spark_swap import Output, Target, WriteError, write_atomically
from .spark_table import TableName, describe_table, sql_string

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The last "SomeError: message" line of a Python traceback relayed by Spark.
_PYTHON_ERROR = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", re.MULTILINE)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # exit 2 is ours to return
        raise _UsageError(f"{self.prog}: {message}")


@dataclass(frozen=True)
class _Job:
    """One batch job, as the command line describes it."""

    config: ModelConfig
    root: Path
    query: str
    table: TableName
    partition: PartitionSpec
    mode: str
    warehouse: Path
    master: str | None

    @property
    def destination(self) -> str:
        if not self.partition:
            return str(self.table)
        return f"{self.table} partition {describe_partition(self.partition)}"


def main(argv: Sequence[str], *, config_path: Path | str) -> int:
    """Run one batch job.

    Args:
        argv: ``--query SQL | --query-file F``, ``--output-table DB.TABLE``, and optionally
            ``--partition KEY=VALUE`` (repeatable), ``--mode overwrite|append``,
            ``--warehouse DIR``, ``--master URL``.
        config_path: the generated ``model.json``.

    Returns:
        The exit code: 0 ok, 1 invalid query or failed job, 2 usage error, 128 + N when
        stopped by signal N.
    """
    try:
        args = _parser().parse_args(list(argv))
        config = ModelConfig.load(config_path)
        job = _Job(config=config,
                   root=Path(args.model_root) if args.model_root else model_root_from_env(),
                   query=_query(args), table=_table_name(args.output_table),
                   partition=_partition(args.partition or ()),
                   mode=args.mode or config.batch.write_mode, warehouse=args.warehouse,
                   master=args.master)
    except _UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except ConfigError as exc:
        warn(f"error: {exc}")
        return EXIT_USAGE
    with Stopper() as stopper:
        return _locked(job, stopper)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="batch_job.py", description="Score a SQL query's rows into a table.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="Spark SQL query whose rows are scored")
    source.add_argument("--query-file", type=Path, help="file holding the query")
    p.add_argument("--output-table", required=True, metavar="DB.TABLE")
    p.add_argument("--partition", action="append", metavar="KEY=VALUE",
                   help="write this static partition of the table (repeatable)")
    p.add_argument("--mode", choices=("overwrite", "append"),
                   help="overwrite (default: the spec's batch.write_mode) or append")
    p.add_argument("--warehouse", type=Path, default=Path(DEFAULT_WAREHOUSE),
                   help=f"warehouse and metastore folder (default: ./{DEFAULT_WAREHOUSE})")
    p.add_argument("--master", help="Spark master (default: local[*], or spark-submit's)")
    p.add_argument("--model-root", help=f"the spec's folder (default: ${ROOT_ENV})")
    return p


def _table_name(text: str) -> TableName:
    parts = text.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise _UsageError(f"--output-table {text!r}: expected DB.TABLE or TABLE, letters,"
                          " digits and underscores")
    return TableName.parse(text)


def _partition(items: Sequence[str]) -> PartitionSpec:
    try:
        return parse_partition(items)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _query(args: argparse.Namespace) -> str:
    if args.query_file is None:
        text = str(args.query)
    else:
        try:
            text = args.query_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise _UsageError(f"--query-file {args.query_file}: {exc.strerror}") from None
    text = text.strip().rstrip(";").strip()
    if not text:
        raise _UsageError("the query is empty")
    return text


def _locked(job: _Job, stopper: Stopper) -> int:
    """The job, holding its warehouse when it owns one (Derby admits one process)."""
    from pyspark.sql import SparkSession

    owner = owns_catalog() and SparkSession.getActiveSession() is None
    lock = None
    if owner:
        try:
            lock = WarehouseLock(job.warehouse, job.destination)
        except WarehouseBusy as exc:
            warn(f"error: {exc}")
            return EXIT_FAILED
    log = job_log(job.warehouse.resolve() if owner else None)
    try:
        return _with_session(job, stopper, log, owner=owner)
    finally:
        if lock is not None:
            lock.release()


def _with_session(job: _Job, stopper: Stopper, log: Path, *, owner: bool) -> int:
    started = time.perf_counter()
    warn(_starting(job, owner))
    try:
        spark, stop = start_session(app=f"pymlc-batch-{job.config.name}", master=job.master,
                                    warehouse=job.warehouse, log=log,
                                    rows_per_batch=job.config.batch.rows_per_batch)
    except Exception as exc:
        return _failed(f"Spark did not start: {_short(exc)}", exc, log, job)
    try:
        stopper.on_stop(spark.interruptAll)
        warn(f"Spark ready on {master_of(spark)} in {elapsed(started):.1f} s; log: {log}")
        return _run(spark, job, stopper, log, owner=owner)
    except JobStopped as exc:
        return _stopped(exc, job)
    finally:
        if stop:
            spark.stop()  # releases the Derby metastore folder for the next job


def _starting(job: _Job, owner: bool) -> str:
    if not owns_catalog():
        return "starting Spark (spark-submit's session)"
    if not owner:
        return "joining the running Spark session"
    return f"starting Spark ({job.master or 'local[*]'}, warehouse {job.warehouse})"


def _run(spark: SparkSession, job: _Job, stopper: Stopper, log: Path, *, owner: bool) -> int:
    started = time.perf_counter()
    stopper.check()
    # Workers start and load the model while the driver checks the query and the metastore.
    warm = WarmUp(spark, job.config, job.root)
    try:
        try:
            source, plan = analyse(spark, job.config, job.query)
            existing = describe_table(spark, job.table)
            check_destination(str(job.table), plan, existing, job.partition)
            _check_partition_values(spark, job, existing)
        except PlanError as exc:
            _report_plan(exc, job)
            return EXIT_FAILED
        except Exception as exc:  # Spark's AnalysisException, ParseException, ...
            stopper.check()
            return _failed(f"the query cannot be analysed: {_short(exc)}", exc, log, job)
        checked = elapsed(started)
        warn(f"query checked in {checked:.1f} s: {len(plan.inputs)} inputs,"
             f" {len(plan.passthrough)} passthrough")
        stopper.check()
        output = job_output(spark, job.config, job.root, source, plan)
        target = Target(job.table, existing, job.partition, job.mode)
        return _write(spark, job, stopper, log, output, target, started, owner=owner)
    finally:
        warm.stop()


def _write(spark: SparkSession, job: _Job, stopper: Stopper, log: Path, output: Output,
           target: Target, started: float, *, owner: bool) -> int:
    try:
        with Progress(spark):
            total = write_atomically(spark, output, target,
                                     say=warn, stopper=stopper, owner=owner)
    except (WriteError, BusyError) as exc:
        return _failed(str(exc), exc, log, job)
    except JobStopped:
        raise
    except Exception as exc:  # the model's error or bad rows, relayed by Spark; any failure
        stopper.check()  # interrupted because the job was told to stop
        return _failed(f"the job failed: {_short(exc)}", exc, log, job)
    seconds = elapsed(started)
    verb = "appended to" if job.mode == "append" else "written to"
    warn(f"done: {total} rows {verb} {target} in {seconds:.1f} s"
         f" ({total / max(seconds, 1e-9):,.0f} rows/s)")
    if stopper.signum is not None:
        warn("told to stop while swapping: the swap had begun and was finished")
    return EXIT_OK


def _check_partition_values(spark: SparkSession, job: _Job, existing: TableInfo | None) -> None:
    """Each partition value must be a value of its column's type (a table created by pymlc has
    STRING keys; one created otherwise may have DATE or INT keys)."""
    if existing is None:
        return
    types = {c.name.lower(): c.spark_type for c in existing.partitions}
    problems = []
    for key, value in job.partition:
        kind = types.get(key, "string")
        if kind.lower() != "string" and spark.sql(
                f"SELECT try_cast('{sql_string(value)}' AS {kind}) IS NULL").collect()[0][0]:
            problems.append(f"--partition {key}={value}: {job.table}'s partition column {key}"
                            f" is {kind.upper()}, and {value!r} is not one")
    if problems:
        raise PlanError(problems)


def _report_plan(exc: PlanError, job: _Job) -> None:
    count = len(exc.problems)
    warn(f"error: the query does not fit the spec ({count} problem{'s' * (count != 1)});"
         f" nothing was written to {job.destination}")
    for problem in exc.problems:
        sys.stderr.write(f"  - {problem}\n")


def _failed(message: str, exc: BaseException, log: Path, job: _Job) -> int:
    """One line for the user; the whole story (Python, py4j and JVM traces) in the log."""
    import traceback

    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n=== pymlc batch: {message}\n")
        out.write("".join(traceback.format_exception(exc)))
    warn(f"error: {message}")
    warn(f"{job.destination} was left as it was; the traces are in {log}")
    return EXIT_FAILED


def _stopped(exc: JobStopped, job: _Job) -> int:
    warn(f"{exc} before the swap: {job.destination} was left as it was")
    return 128 + exc.signum


def _short(exc: BaseException) -> str:
    """The gist of a Spark error: the Python exception a worker raised, else the first line."""
    text = str(exc)
    found = _PYTHON_ERROR.findall(text)
    if found:
        kind, message = found[-1]
        if kind == "BadRowsError":
            return f"bad rows: {message.strip()}"
        return f"{kind}: {message.strip()}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:2000]
