"""The batch job's SparkSession, its log, and its progress on stderr.

When the job starts Spark itself (``pymlc batch``, or ``batch_job.py`` run by Python, on any
master: ``local[*]`` by default, ``--master spark://...``), pymlc owns the catalog: an embedded
Hive metastore (Derby) and the tables, both inside one folder (``--warehouse``), with Derby's
``metastore_db`` and ``derby.log`` there too, never in the current directory. Derby lets one
process at a time open a metastore folder, so a job holds an exclusive lock on its warehouse
(``WarehouseLock``) and a second job gets one clear error instead of Derby's. The driver binds
to 127.0.0.1 in local mode; the UI is off; the JVM's log goes to the job's log file, never to the
terminal.

Launched by ``spark-submit``, the job takes the session spark-submit configured and the
cluster's catalog; pymlc only sets the Arrow batch size when nobody else did.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_WAREHOUSE", "Progress", "WarehouseBusy", "WarehouseLock", "context",
           "elapsed", "job_log", "large_var_types", "master_of", "owns_catalog",
           "start_session", "warn"]

DEFAULT_WAREHOUSE = ".pyml-warehouse"
_ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
_LARGE_VAR_TYPES = "spark.sql.execution.arrow.useLargeVarTypes"
# pandas writes nanosecond timestamps to Parquet by default; Spark reads them with this on
# (as TIMESTAMP_NTZ(9)/TIMESTAMP_LTZ(9), which the job casts to microseconds, checked).
_NANOS = "spark.sql.timestampNanosTypes.enabled"
_KEEP_LOGS = 20
_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""


def warn(message: str) -> None:
    """One progress line on stderr (stdout stays free for data)."""
    sys.stderr.write(f"pymlc batch: {message}\n")
    sys.stderr.flush()


def owns_catalog() -> bool:
    """Whether this job starts Spark itself (so its warehouse and metastore are pymlc's), as
    opposed to running inside the driver ``spark-submit`` started."""
    return "PYSPARK_GATEWAY_PORT" not in os.environ


class WarehouseBusy(Exception):
    """Another job holds the warehouse (its embedded metastore admits one process)."""


class WarehouseLock:
    """An exclusive lock on a local warehouse folder, held for the job's life.

    The kernel releases it when the process dies, however it dies, so a killed job never
    leaves a stale lock.
    """

    def __init__(self, warehouse: Path, table: str) -> None:
        warehouse.mkdir(parents=True, exist_ok=True)
        path = warehouse / ".pymlc-batch.lock"
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise WarehouseBusy(
                f"the warehouse {warehouse} is in use by {holder}; its embedded metastore"
                " (Derby) admits one process at a time: wait for that job to finish, or give"
                " this one its own --warehouse") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pymlc batch job {os.getpid()} writing {table}"
                         f" since {time.strftime('%H:%M:%S')}")
        self._file.flush()

    def release(self) -> None:
        """Give the warehouse back (also done by the kernel when the process dies)."""
        self._file.close()


def job_log(warehouse: Path | None) -> Path:
    """A new log file for this job: in ``<warehouse>/logs`` when pymlc owns the warehouse,
    else in the system's temporary folder. The oldest logs beyond the last 20 are removed."""
    folder = warehouse / "logs" if warehouse is not None \
        else Path(tempfile.gettempdir()) / "pymlc-batch-logs"
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("batch-*.log"))[:-_KEEP_LOGS]:
        old.unlink(missing_ok=True)
    return folder / f"batch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def start_session(*, app: str, master: str | None, warehouse: Path, rows_per_batch: int,
                  log: Path) -> tuple[SparkSession, bool]:
    """Start the job's session, or join the one already running in this process.

    Args:
        app: the Spark application name.
        master: ``--master``; None means ``local[*]`` unless launched by spark-submit.
        warehouse: the warehouse and metastore folder (used when pymlc owns the catalog and
            no session is running yet).
        rows_per_batch: rows per Arrow batch handed to the model.
        log: the job's log file, where the JVM logs when this call starts it.

    Returns:
        The session, with Hive support, and whether this call started it (and should stop it).
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # e.g. a notebook or a test session: its settings stay
        spark, started = active, False
    elif owns_catalog():
        spark, started = _own(app, master or "local[*]", warehouse.resolve(), rows_per_batch,
                              log), True
    else:  # spark-submit's JVM: its --master and --conf, the cluster's metastore
        spark, started = SparkSession.builder.appName(app).enableHiveSupport().getOrCreate(), \
            False
    conf = spark.conf
    # The spec's batch size, unless whoever ran spark-submit chose one.
    if started or active is not None or conf.get(_ARROW_BATCH, None) is None:
        conf.set(_ARROW_BATCH, str(rows_per_batch))
    conf.set(_NANOS, "true")
    spark.catalog.databaseExists("default")  # opens the metastore now: part of start-up
    return spark, started


def _own(app: str, master: str, warehouse: Path, rows_per_batch: int,
         log: Path) -> SparkSession:
    """A session pymlc configures: its warehouse, its Derby metastore, its log."""
    from pyspark.sql import SparkSession

    warehouse.mkdir(parents=True, exist_ok=True)
    local = master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this venv's pandas
    with tempfile.NamedTemporaryFile("w", suffix=".properties", prefix="pymlc-log4j2-",
                                     delete=False) as config:
        config.write(_LOG4J.format(path=log))
    log4j = Path(config.name).as_uri()
    settings = {
        "spark.sql.warehouse.dir": warehouse.as_uri(),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={warehouse / 'metastore_db'};create=true",
        # derby.log goes to derby.system.home; JVM options, read before Derby and log4j start.
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}"
                                         f" -Dlog4j2.configurationFile={log4j}",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        _ARROW_BATCH: str(rows_per_batch),
        # Timestamps reach pandas as UTC, the spec's timestamp semantics; naive ones are UTC.
        "spark.sql.session.timeZone": "UTC",
    }
    if local:
        settings |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    builder = SparkSession.builder.appName(app).master(master).enableHiveSupport()
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    finally:
        Path(config.name).unlink(missing_ok=True)


def context(spark: SparkSession) -> Any | None:
    """The session's SparkContext, or None where there is none (Spark Connect). Only progress
    reports and the workers' warm-up use it; the job's data path never does."""
    try:
        return spark.sparkContext
    except Exception:  # Spark Connect: no SparkContext on the client
        return None


def master_of(spark: SparkSession) -> str:
    """The master the session really runs on (``local[*]``, ``spark://host:7077``, ...)."""
    try:
        return str(spark.conf.get("spark.master"))
    except Exception:  # a Connect server may not tell
        return "unknown master"


def large_var_types(spark: SparkSession) -> bool:
    """Whether this session's Arrow batches hold large strings and bytes (64-bit offsets)."""
    return str(spark.conf.get(_LARGE_VAR_TYPES, "false")).lower() == "true"


class Progress:
    """Reports running stages (tasks done of total) every few seconds, where Spark tells."""

    def __init__(self, spark: SparkSession, *, every: float = 5.0) -> None:
        found = context(spark)
        self._tracker = found.statusTracker() if found is not None else None
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pymlc-progress", daemon=True)
        self._last = ""

    def __enter__(self) -> Progress:
        if self._tracker is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
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
        assert self._tracker is not None
        stages = []
        for stage_id in sorted(self._tracker.getActiveStageIds()):
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                stages.append(f"stage {stage_id}: {info.numCompletedTasks}/{info.numTasks}"
                              f" tasks ({info.numActiveTasks} running)")
        return "; ".join(stages)


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return time.perf_counter() - start
