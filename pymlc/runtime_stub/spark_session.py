"""The batch job's SparkSession, and its progress on stderr.

Locally (``local[*]``, the default) Spark runs in this process's JVM with an embedded Hive
metastore (Derby) and a warehouse, both inside one folder (``--warehouse``): tables, Derby's
``metastore_db`` and ``derby.log`` all go there, never into the current directory. Derby lets
one JVM at a time open a metastore folder. The driver binds to 127.0.0.1 with the UI off.

On a cluster (``--master`` other than local, or launched by ``spark-submit``), the session is
whatever spark-submit and the cluster's ``hive-site.xml`` configure; pymlc only sets the Arrow
batch size when nobody else did.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_WAREHOUSE", "Progress", "is_local", "start_session", "warn"]

DEFAULT_WAREHOUSE = ".pyml-warehouse"
_ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
_LARGE_VAR_TYPES = "spark.sql.execution.arrow.useLargeVarTypes"


def warn(message: str) -> None:
    """One progress line on stderr (stdout stays free for data)."""
    sys.stderr.write(f"pymlc batch: {message}\n")
    sys.stderr.flush()


def is_local(master: str | None) -> bool:
    """Whether this job starts its own local Spark (not spark-submit, not a cluster master)."""
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # the JVM was started by spark-submit
        return False
    return master is None or master.startswith("local")


def start_session(*, app: str, master: str | None, warehouse: Path,
                  rows_per_batch: int) -> tuple[SparkSession, bool]:
    """Start the job's session, or join the one already running in this process.

    Args:
        app: the Spark application name.
        master: ``--master``; None means ``local[*]`` unless launched by spark-submit.
        warehouse: the local warehouse and metastore folder (ignored on a cluster, and when a
            session is already running).
        rows_per_batch: rows per Arrow batch handed to the model.

    Returns:
        The session, with Hive support, and whether this call started it (and should stop it).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # e.g. a notebook or a test session: its settings stay
        spark, started = active, False
    else:
        builder = SparkSession.builder.appName(app).enableHiveSupport()
        if is_local(master):
            builder = _local(builder, master or "local[*]", warehouse.resolve(), rows_per_batch)
            started = True
        else:
            if master is not None and "PYSPARK_GATEWAY_PORT" not in os.environ:
                builder = builder.master(master)
            started = False
        spark = builder.getOrCreate()
        if started:
            spark.sparkContext.setLogLevel("ERROR")  # our own progress lines say what happens
            _split_files(spark)
    # The spec's batch size, unless whoever ran spark-submit chose one.
    if not ("PYSPARK_GATEWAY_PORT" in os.environ
            and spark.sparkContext.getConf().contains(_ARROW_BATCH)):
        spark.conf.set(_ARROW_BATCH, str(rows_per_batch))
    spark.catalog.databaseExists("default")  # opens the metastore now: part of start-up
    return spark, started


def large_var_types(spark: SparkSession) -> bool:
    """Whether this session's Arrow batches hold large strings and bytes (64-bit offsets)."""
    return str(spark.conf.get(_LARGE_VAR_TYPES, "false")).lower() == "true"


def batch_rows(spark: SparkSession) -> int:
    """The rows per Arrow batch handed to the model in this session (set by ``start_session``)."""
    return int(str(spark.conf.get(_ARROW_BATCH, "10000")))


def _split_files(spark: SparkSession) -> None:
    """Split input files into about eight tasks per core (at least 1 MB each).

    Spark aims at one split per core but adds 4 MB of "open cost" per file and splits Parquet
    only at row groups, so a 10 MB file of ten row groups became two tasks of 700k and 300k
    rows (measured): one core idle for 40% of the job. Smaller splits let the two cores share
    the work; beyond the 128 MB split cap large inputs are unaffected.
    """
    cores = spark.sparkContext.defaultParallelism
    spark.conf.set("spark.sql.files.minPartitionNum", str(8 * cores))
    spark.conf.set("spark.sql.files.openCostInBytes", str(1 << 20))


def _local(builder: SparkSession.Builder, master: str, warehouse: Path,
           rows_per_batch: int) -> SparkSession.Builder:
    warehouse.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this venv's pandas
    settings = {
        "spark.sql.warehouse.dir": warehouse.as_uri(),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={warehouse / 'metastore_db'};create=true",
        # derby.log goes to derby.system.home; a JVM option, read before Derby starts.
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        _ARROW_BATCH: str(rows_per_batch),
        # Timestamps reach pandas as UTC, the spec's timestamp semantics.
        "spark.sql.session.timeZone": "UTC",
    }
    builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder


class Progress:
    """Reports running stages (tasks done of total) and scored rows every few seconds."""

    def __init__(self, spark: SparkSession, rows: Callable[[], int], *,
                 every: float = 5.0) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._rows = rows
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pymlc-progress", daemon=True)
        self._last = ""

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self._every)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                line = self._line()
            except Exception:  # the JVM may be shutting down; progress is best-effort
                return
            if line and line != self._last:
                warn(line)
                self._last = line

    def _line(self) -> str:
        stages = []
        for stage_id in sorted(self._tracker.getActiveStageIds()):
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                stages.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks}"
                              f" tasks ({info.numActiveTasks} running)")
        if not stages:
            return ""
        return f"{'; '.join(stages)}; {self._rows()} rows scored so far"


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return time.perf_counter() - start
