"""Writing the destination atomically: a failed or stopped job leaves it exactly as it was.

Spark's own writes are not atomic (measured): ``saveAsTable(mode="overwrite")`` drops the old
table before the job runs, and ``INSERT OVERWRITE`` empties it. So every job first writes a
*staging* table of its own, a managed table beside the destination
(``<table>__pyml_<job id>``), with Spark's own writer; checks that every row of the query
reached it (both counts taken by the write job itself); and only then touches the destination,
with metastore statements that each leave a readable table:

* no destination yet: the staging table is renamed to it, folder and all (for a partitioned
  destination, an empty table partitioned by the keys is created and the staging folder
  becomes its partition);
* overwrite: the destination (or its partition) is pointed at the staging table's folder, one
  ``ALTER TABLE ... SET LOCATION``; then the staging table is pointed at the replaced folder and
  dropped, which deletes that folder with it (a managed table's drop deletes its data; an
  external destination's old folder is its owner's and is kept);
* append: the staging rows are inserted into the destination (or a new partition takes the
  staging folder, as above).

All of it is Spark SQL, nothing of py4j or Hadoop's file system API: it works alike locally, on
a cluster and through Spark Connect. The staging table carries its job's state in its table
properties (``pyml.*``: the destination, the partition, a heartbeat renewed every minute and,
from the moment the swap starts, the folder it replaces), so that whatever a killed job left
(``kill -9``, a lost driver) the next job can finish or undo (``spark_debris``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .spark_debris import (
    FOR,
    HEARTBEAT,
    HEARTBEAT_EVERY,
    PARTITION,
    REPLACES,
    STAGING_MARK,
    clean_debris,
    release,
    retire,
)
from .spark_dest import PartitionSpec, TableInfo, describe_partition
from .spark_stop import Stopper
from .spark_table import TableName, describe_table, partition_location, partition_sql, sql_string

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

__all__ = ["Output", "Target", "WriteError", "write_atomically"]

_MAX_NAME = 128  # the Hive metastore's limit on table names


class WriteError(Exception):
    """The staging table failed its row-count check; the destination was not touched."""


@dataclass(frozen=True)
class Target:
    """Where the job writes: a table, or one partition of it, and how.

    Attributes:
        table: the destination table.
        existing: what ``describe_table`` found there (checked by the caller), or None.
        partition: the static partition written; empty for an unpartitioned table.
        mode: ``overwrite`` or ``append``.
    """

    table: TableName
    existing: TableInfo | None
    partition: PartitionSpec = ()
    mode: str = "overwrite"

    def __str__(self) -> str:
        if not self.partition:
            return str(self.table)
        return f"{self.table} partition {describe_partition(self.partition)}"


@dataclass(frozen=True)
class Output:
    """The job's scored rows, not computed yet.

    Attributes:
        schema: the scored rows' schema (the staging table's columns).
        frame: the scored rows, for Spark's writer.
        counts: read after ``frame`` was written: the rows the query gave the model and the
            rows that reached the writer.
    """

    schema: StructType
    frame: Callable[[], DataFrame]
    counts: Callable[[], tuple[int, int]]


def write_atomically(spark: SparkSession, output: Output, target: Target, *,
                     say: Callable[[str], None], stopper: Stopper, owner: bool) -> int:
    """Write ``output`` to ``target`` through a staging table; returns the rows written.

    Args:
        spark: the session.
        output: the job's output (running it runs the model).
        target: the destination.
        say: progress reporter.
        stopper: says whether the job was told to stop; no swap starts once it was.
        owner: whether this job is the only one using the metastore (a local warehouse it
            holds), so that any staging table found is debris.

    Raises:
        WriteError: staging failed its row count.
        BusyError: another job writes the same destination right now.
        JobStopped: the job was told to stop before the swap.
        Exception: whatever the Spark job raised (e.g. the model's error). In every case the
            destination is left as it was and no staging table or folder survives.
    """
    created_database = _ensure_database(spark, target.table.database)
    staging = _staging_name(target.table)
    swapped = False
    try:
        if not created_database:
            clean_debris(spark, target.table, target.partition, say=say, owner=owner)
        _create_staging(spark, staging, target, output.schema)
        say(f"scoring into staging table {staging}")
        started = time.perf_counter()
        with _Heartbeat(spark, staging):
            output.frame().write.insertInto(staging.sql)
        rows = _check_counts(staging, *output.counts())
        say(f"staging table complete: {rows} rows scored and written in"
            f" {time.perf_counter() - started:.1f} s")
        stopper.pause_before_swap(say)
        stopper.check()  # a job told to stop never starts the swap
        with stopper.critical():  # ...and a started swap is finished, not torn
            started = time.perf_counter()
            _swap(spark, staging, target)
            swapped = True
            say(f"{_verb(target)} {target} took {time.perf_counter() - started:.1f} s")
        return rows
    finally:
        if not swapped:
            _drop_quietly(spark, staging, database=created_database)


def _verb(target: Target) -> str:
    if target.existing is None:
        return "creating"
    return "appending to" if target.mode == "append" else "replacing"


def _ensure_database(spark: SparkSession, database: str) -> bool:
    if spark.catalog.databaseExists(database):
        return False
    spark.sql(f"CREATE DATABASE `{database}`")
    return True


def _staging_name(table: TableName) -> TableName:
    suffix = STAGING_MARK + uuid.uuid4().hex[:12]
    return TableName(table.database, table.table[: _MAX_NAME - len(suffix)] + suffix)


def _create_staging(spark: SparkSession, name: TableName, target: Target,
                    schema: StructType) -> None:
    """The job's staging table: managed, empty, in the destination's format and database."""
    fmt = target.existing.provider.lower() if target.existing is not None else "parquet"
    spark.catalog.createTable(str(name), source=fmt, schema=schema)
    keys = sorted(target.partition)  # one spelling per partition, whatever the keys' order
    _set_properties(spark, name, {FOR: str(target.table), PARTITION: describe_partition(keys),
                                  HEARTBEAT: f"{time.time():.0f}"})


def _set_properties(spark: SparkSession, name: TableName, properties: dict[str, str]) -> None:
    pairs = ", ".join(f"'{key}' = '{sql_string(value)}'" for key, value in properties.items())
    spark.sql(f"ALTER TABLE {name.sql} SET TBLPROPERTIES ({pairs})")


class _Heartbeat:
    """Renews the staging table's heartbeat while the job writes it, so that no other job
    takes it for a dead job's debris however long the scoring takes."""

    def __init__(self, spark: SparkSession, name: TableName) -> None:
        self._spark, self._name = spark, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pymlc-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            try:
                _set_properties(self._spark, self._name, {HEARTBEAT: f"{time.time():.0f}"})
            except Exception:  # the session may be stopping; the job's own errors say why
                return


def _check_counts(staging: TableName, query_rows: int, written: int) -> int:
    if written != query_rows:
        raise WriteError(f"the query gave the model {query_rows} rows but {written} reached"
                         f" staging table {staging}; the destination was not touched")
    return written


def _swap(spark: SparkSession, staging: TableName, target: Target) -> None:
    folder = _location(spark, staging)
    if target.partition:
        _swap_partition(spark, staging, folder, target)
    elif target.existing is None:
        spark.sql(f"ALTER TABLE {staging.sql} RENAME TO {target.table.sql}")
        spark.sql(f"ALTER TABLE {target.table.sql} UNSET TBLPROPERTIES IF EXISTS"
                  f" ('{FOR}', '{PARTITION}', '{HEARTBEAT}')")
    elif target.mode == "append":
        spark.sql(f"INSERT INTO {target.table.sql} SELECT * FROM {staging.sql}")
        spark.sql(f"DROP TABLE {staging.sql}")
    else:
        _replace(spark, staging, folder, target, target.existing.location,
                 f"ALTER TABLE {target.table.sql} SET LOCATION '{sql_string(folder)}'")
    spark.sql(f"REFRESH TABLE {target.table.sql}")


def _swap_partition(spark: SparkSession, staging: TableName, folder: str,
                    target: Target) -> None:
    table, spec = target.table.sql, partition_sql(target.partition)
    if target.existing is None:
        _create_partitioned(spark, staging, target)
    old = partition_location(spark, target.table, target.partition)
    if old is None:  # a new partition takes the staging folder, in append mode too
        _set_properties(spark, staging, {REPLACES: ""})
        spark.sql(f"ALTER TABLE {table} ADD {spec} LOCATION '{sql_string(folder)}'")
        release(spark, staging, folder)
    elif target.mode == "append":
        spark.sql(f"INSERT INTO {table} {spec} SELECT * FROM {staging.sql}")
        spark.sql(f"DROP TABLE {staging.sql}")
    else:
        _replace(spark, staging, folder, target, old,
                 f"ALTER TABLE {table} {spec} SET LOCATION '{sql_string(folder)}'")


def _replace(spark: SparkSession, staging: TableName, folder: str, target: Target, old: str,
             point: str) -> None:
    """Point the destination at ``folder`` (``point``), then drop the staging table with the
    replaced folder ``old`` if that is the metastore's to delete."""
    existing = target.existing or describe_table(spark, target.table)
    deletable = existing is not None and existing.managed
    if target.partition and existing is not None:
        # A partition whose folder is the table's own (or holds it) is not deleted with it.
        table_folder = existing.location.rstrip("/")
        deletable = deletable and old.rstrip("/") != table_folder \
            and not table_folder.startswith(old.rstrip("/") + "/")
    _set_properties(spark, staging, {REPLACES: old if deletable else ""})  # the journal first
    spark.sql(point)
    if deletable:
        retire(spark, staging, old)
    else:
        release(spark, staging, folder)


def _create_partitioned(spark: SparkSession, staging: TableName, target: Target) -> None:
    """The destination, created empty: the staging table's columns, then the partition keys."""
    fmt = "parquet"
    keys = ", ".join(f"`{key}`" for key, _ in target.partition)
    values = ", ".join(f"CAST(NULL AS STRING) AS `{key}`" for key, _ in target.partition)
    spark.sql(f"CREATE TABLE {target.table.sql} USING {fmt} PARTITIONED BY ({keys})"
              f" AS SELECT *, {values} FROM {staging.sql} LIMIT 0")


def _location(spark: SparkSession, name: TableName) -> str:
    found = describe_table(spark, name)
    assert found is not None, f"staging table {name} vanished"
    return found.location


def _drop_quietly(spark: SparkSession, staging: TableName, *, database: bool) -> None:
    """Drop the staging table (and its folder), and the database if the job created it."""
    try:
        spark.sql(f"DROP TABLE IF EXISTS {staging.sql}")
        if database:
            spark.sql(f"DROP DATABASE IF EXISTS `{staging.database}`")
    except Exception:  # the session is gone (e.g. its JVM was killed): the next job cleans up
        pass
