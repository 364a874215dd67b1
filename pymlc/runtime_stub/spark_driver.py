"""The batch driver: a SQL query in, the model's predictions out, into a table, atomically.

The generated ``batch_job.py`` calls :func:`main`. Steps, in this order:

1. start Spark (local with an embedded Hive metastore, or whatever spark-submit provides);
2. analyse the query (its schema only, no Spark job) and check it against the spec's inputs,
   its passthrough columns and the destination table: every problem reported at once, exit 1,
   nothing written;
3. score with ``mapInArrow``: inputs cast up to the spec's types in Spark, Arrow batches of
   ``batch.rows_per_batch`` rows, the model loaded once per Python worker (warmed up by a tiny
   background job while step 2 runs), every batch through the server's own ``Predictor`` call
   (``predict_columns``, or ``predict_tensors`` for tensor models: one query row per sample,
   see ``spark_tensor``), passthrough columns beside. In local mode a plain query over Parquet
   files is read by the workers themselves instead (``spark_scan``);
4. write a staging table (in local mode its Parquet files are written by the workers
   themselves), check that every query row reached it (counted by the write job itself),
   swap it in (see ``spark_table``).

Exit codes: 0 ok; 1 invalid query or failed job (the destination is unchanged); 2 usage error.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ROOT_ENV, ConfigError, ModelConfig, model_root_from_env
from .spark_plan import Column, JobPlan, PlanError, TableInfo, check_destination, plan_job
from .spark_scan import FileScan, plan_scan, run_scan
from .spark_score import PASSTHROUGH_PREFIX, score_batches, warm_up, write_parquet
from .spark_session import (
    DEFAULT_WAREHOUSE,
    Progress,
    batch_rows,
    elapsed,
    large_var_types,
    start_session,
    warn,
)
from .spark_table import Output, TableName, WriteError, describe_table, write_atomically
from .spark_tensor import score_tensor_batches

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The last "SomeError: message" line of a Python traceback relayed by Spark.
_PYTHON_ERROR = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$", re.MULTILINE)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits by itself; we return EXIT_USAGE
        raise _UsageError(f"{self.prog}: {message}")


def main(argv: Sequence[str], *, config_path: Path | str) -> int:
    """Run one batch job.

    Args:
        argv: ``--query SQL | --query-file F``, ``--output-table DB.TABLE``, and optionally
            ``--mode overwrite|append``, ``--warehouse DIR``, ``--master URL``.
        config_path: the generated ``model.json``.

    Returns:
        The exit code: 0 ok, 1 invalid query or failed job, 2 usage error.
    """
    try:
        args = _parser().parse_args(list(argv))
        dest = _table_name(args.output_table)
        query = _query(args)
        config = ModelConfig.load(config_path)
        root = Path(args.model_root) if args.model_root else model_root_from_env()
    except _UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except ConfigError as exc:
        warn(f"error: {exc}")
        return EXIT_USAGE
    return _run(args, config, root, query, dest)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="batch_job.py", description="Score a SQL query's rows into a table.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="Spark SQL query whose rows are scored")
    source.add_argument("--query-file", type=Path, help="file holding the query")
    p.add_argument("--output-table", required=True, metavar="DB.TABLE")
    p.add_argument("--mode", choices=("overwrite", "append"),
                   help="overwrite (default: the spec's batch.write_mode) or append")
    p.add_argument("--warehouse", type=Path, default=Path(DEFAULT_WAREHOUSE),
                   help=f"local warehouse and metastore folder (default: ./{DEFAULT_WAREHOUSE})")
    p.add_argument("--master", help="Spark master (default: local[*], or spark-submit's)")
    p.add_argument("--model-root", help=f"the spec's folder (default: ${ROOT_ENV})")
    return p


def _table_name(text: str) -> TableName:
    parts = text.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise _UsageError(f"--output-table {text!r}: expected DB.TABLE or TABLE, letters,"
                          " digits and underscores")
    return TableName.parse(text)


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


def _run(args: argparse.Namespace, config: ModelConfig, root: Path, query: str,
         dest: TableName) -> int:
    mode = args.mode or config.batch.write_mode
    started = time.perf_counter()
    warn(f"starting Spark ({args.master or 'local[*]'})")
    spark, stop = start_session(app=f"pymlc-batch-{config.name}", master=args.master,
                                warehouse=args.warehouse,
                                rows_per_batch=config.batch.rows_per_batch)
    warn(f"Spark ready in {elapsed(started):.1f} s")
    started = time.perf_counter()
    # Workers start and load the model while the driver checks the query and the metastore.
    warm = _WarmUp(spark, config, root)
    try:
        try:
            source, plan, existing = _analyse(spark, config, query, dest)
        except PlanError as exc:
            _report_plan(exc, dest)
            return EXIT_FAILED
        except Exception as exc:  # Spark's AnalysisException, ParseException, ...
            warn(f"error: the query cannot be analysed: {_short(exc)}")
            return EXIT_FAILED
        return _score(spark, config, root, source, plan, dest, existing, mode, started)
    finally:
        warm.stop()
        if stop:
            spark.stop()  # releases the Derby metastore folder for the next job


class _WarmUp:
    """A background job of one tiny task per core that loads the model into Python workers."""

    def __init__(self, spark: SparkSession, config: ModelConfig, root: Path) -> None:
        self._spark = spark
        self._group = f"pymlc-warm-up-{id(self)}"
        fn = functools.partial(warm_up, config_path=str(config.path),
                               model_root=str(root.resolve()))
        self._thread = threading.Thread(target=self._run, args=(fn,), name="pymlc-warm-up",
                                        daemon=True)
        self._thread.start()

    def _run(self, fn: Any) -> None:
        try:
            context = self._spark.sparkContext
            context.setJobGroup(self._group, "pymlc: start Python workers", True)
            cores = context.defaultParallelism
            self._spark.range(0, cores, 1, cores).mapInArrow(fn, "id BIGINT").collect()
        except Exception:  # a model that cannot load fails the real job, with its message
            pass

    def stop(self) -> None:
        if self._thread.is_alive():
            self._spark.sparkContext.cancelJobGroup(self._group)
        self._thread.join(timeout=30)


def _analyse(spark: SparkSession, config: ModelConfig, query: str,
             dest: TableName) -> tuple[DataFrame, JobPlan, TableInfo | None]:
    """The query's (analysed, not yet run) DataFrame, the job plan and the destination."""
    source = spark.sql(query)  # analysis only: no job runs; the job reuses this plan
    plan = plan_job(config, [Column.of(f) for f in source.schema.fields])
    existing = describe_table(spark, dest)
    check_destination(str(dest), plan, existing)
    warn(f"query checked: {len(plan.inputs)} inputs, {len(plan.passthrough)} passthrough")
    return source, plan, existing


def _report_plan(exc: PlanError, dest: TableName) -> None:
    count = len(exc.problems)
    warn(f"error: the query does not fit the spec ({count} problem{'s' * (count != 1)});"
         f" nothing was written to {dest}")
    for problem in exc.problems:
        sys.stderr.write(f"  - {problem}\n")


def _score(spark: SparkSession, config: ModelConfig, root: Path, source: DataFrame,
           plan: JobPlan, dest: TableName, existing: TableInfo | None, mode: str,
           started: float) -> int:
    rows = spark.sparkContext.accumulator(0)  # progress only: tasks may be retried
    output = _output(spark, config, root, source, plan, rows)
    try:
        with Progress(spark, lambda: int(rows.value)):
            total = write_atomically(spark, output, dest, existing=existing, mode=mode,
                                     say=warn)
    except WriteError as exc:
        warn(f"error: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # the model's error, relayed by Spark, or any Spark failure
        warn(f"error: the job failed: {_short(exc)}")
        warn(f"{dest} was left as it was")
        return EXIT_FAILED
    seconds = elapsed(started)
    warn(f"done: {total} rows {'appended to' if mode == 'append' else 'written to'} {dest}"
         f" in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} rows/s)")
    return EXIT_OK


def _count(observation: Any) -> int:
    return int(observation.get["rows"])


def _output(spark: SparkSession, config: ModelConfig, root: Path, source: DataFrame,
            plan: JobPlan, rows: Any) -> Output:
    """The job's output, not computed yet: the query's inputs cast, scored by the model."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = T.StructType([T.StructField(c.name, _parse_type(c.spark_type), True)
                           for c in plan.output])
    arrow_schema = to_arrow_schema(
        schema, timezone=spark.conf.get("spark.sql.session.timeZone"),
        prefers_large_types=large_var_types(spark))
    common: dict[str, Any] = {
        "config_path": str(config.path), "model_root": str(root.resolve()),
        "inputs": tuple(f.name for _, f, _ in plan.inputs),
        "passthrough": tuple(name for _, name in plan.passthrough),
        "schema": arrow_schema, "rows": rows}
    if config.kind == "tensor":
        score = functools.partial(score_tensor_batches, **common)
    else:
        score = functools.partial(score_batches, **common,
                                  nullable=tuple(f.nullable for f in config.outputs))
    given, written = Observation(), Observation()
    one = F.count(F.lit(1)).alias("rows")

    @functools.cache
    def queried() -> DataFrame:
        """The query's columns as the workers take them, when Spark reads the query."""
        # Safe casts (narrower types of the same family) happen here, in Spark.
        selected = [F.col(_quoted(column)).cast(spark_type).alias(field.name)
                    for column, field, spark_type in plan.inputs]
        selected += [F.col(_quoted(column)).alias(PASSTHROUGH_PREFIX + name)
                     for column, name in plan.passthrough]
        # Both counts are taken by the write job itself: no second pass over the data.
        return _spread(spark, source.select(*selected)).observe(given, one)

    def files(folder: Path, options: dict[str, Any]) -> tuple[int, int]:
        scan = plan_scan(spark, source, plan, batch_rows(spark))
        if isinstance(scan, FileScan):
            warn(f"the Python workers read the query's {_plural(scan.files, 'Parquet file')}"
                 f" themselves ({scan.rows} rows, {_plural(len(scan.tasks), 'task')})")
            return scan.rows, run_scan(spark, scan, score, folder, options)
        warn(f"Spark reads the query for the Python workers: {scan}")
        fn = functools.partial(write_parquet, score=score, folder=str(folder), options=options)
        rows = sum(int(r["rows"]) for r in queried().mapInArrow(fn, "rows BIGINT").collect())
        return _count(given), rows

    return Output(schema=schema,
                  frame=lambda: queried().mapInArrow(score, schema).observe(written, one),
                  counts=lambda: (_count(given), _count(written)), files=files)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _spread(spark: SparkSession, frame: DataFrame) -> DataFrame:
    """``frame`` over at least one partition per core, so that every core runs the model."""
    cores = spark.sparkContext.defaultParallelism
    if frame.rdd.getNumPartitions() < cores:  # planning only, no job
        return frame.repartition(cores)
    return frame


def _parse_type(spark_type: str) -> Any:
    from pyspark.sql.types import _parse_datatype_string

    return _parse_datatype_string(spark_type)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _short(exc: BaseException) -> str:
    """The gist of a Spark error: the Python exception a worker raised, else the first line."""
    text = str(exc)
    found = _PYTHON_ERROR.findall(text)
    if found:
        kind, message = found[-1]
        return f"{kind}: {message.strip()}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:2000]

