"""What a killed batch job leaves behind, finished or undone by the next job.

A job that is stopped (SIGTERM, Ctrl-C, its ``pymlc batch`` killed) or fails cleans up after
itself. A job killed outright (``kill -9`` of its driver, a lost machine) cannot: its staging
table stays in the metastore. Every staging table (``<table>__pyml_<job id>``) says in its
table properties what it is for (``pyml.for``, ``pyml.partition``), that its job is alive
(``pyml.heartbeat``, renewed every minute while it writes) and, once its swap started, which
folder the swap replaces (``pyml.replaces``). So the next job on the same database, before it
writes, looks at each staging table whose job is dead:

* if the destination (or its partition) already uses the staging table's folder, the dead job's
  swap went through: the staging table is dropped the way the swap would have dropped it,
  deleting the replaced folder, or keeping the one now in use;
* otherwise the swap never happened: the staging table is dropped, and its folder with it.

A job is dead once its heartbeat is older than ``STALE_AFTER``; when the job runs on a local
warehouse it holds alone (``spark_session.WarehouseLock``), every staging table it finds is
dead. A *live* staging table for the same destination (the same partition, or the whole table)
is another job writing it right now: the new job stops with one clear error instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .spark_dest import PartitionSpec, describe_partition
from .spark_table import (
    TableName,
    describe_table,
    partition_location,
    sql_string,
    table_properties,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["FOR", "HEARTBEAT", "HEARTBEAT_EVERY", "PARTITION", "REPLACES", "STAGING_MARK",
           "STALE_AFTER", "BusyError", "clean_debris", "release", "retire"]

STAGING_MARK = "__pyml_"
_STAGING = re.compile(r".+__pyml_[0-9a-f]{12}")
FOR, PARTITION, HEARTBEAT, REPLACES = "pyml.for", "pyml.partition", "pyml.heartbeat", \
    "pyml.replaces"
HEARTBEAT_EVERY = 60.0
# A staging table whose heartbeat is older than this belongs to a dead job.
STALE_AFTER = 300.0


class BusyError(Exception):
    """Another job is writing the same destination right now."""


def clean_debris(spark: SparkSession, dest: TableName, partition: PartitionSpec, *,
                 say: Callable[[str], None], owner: bool, now: float | None = None) -> None:
    """Finish or undo what dead jobs left in ``dest``'s database (see the module docstring).

    Args:
        spark: the session.
        dest: the destination the new job writes.
        partition: the partition it writes (empty: the whole table).
        say: progress reporter.
        owner: whether the new job holds the metastore alone (every staging table is dead).
        now: the current time (seconds since the epoch); tests pass their own.

    Raises:
        BusyError: a live job writes the same destination.
    """
    now = time.time() if now is None else now
    wanted = describe_partition(sorted(partition))
    for name in _staging_tables(spark, dest.database):
        properties = table_properties(spark, name)
        age = now - _heartbeat(properties)
        if not owner and age < STALE_AFTER:
            if properties.get(FOR) == str(dest) and _overlap(properties.get(PARTITION, ""),
                                                            wanted):
                raise BusyError(_busy(dest, wanted, name, age))
            continue
        say(f"removing staging table {name}, left by a job that died {age / 60:.0f} min ago")
        _finish(spark, name, properties)


def _staging_tables(spark: SparkSession, database: str) -> list[TableName]:
    rows = spark.sql(f"SHOW TABLES IN `{database}` LIKE '*{STAGING_MARK}*'").collect()
    return [TableName(database, str(r["tableName"])) for r in rows
            if not r["isTemporary"] and _STAGING.fullmatch(str(r["tableName"]))]


def _heartbeat(properties: dict[str, str]) -> float:
    """When the job last said it was alive: its heartbeat, else the table's last change."""
    for key in (HEARTBEAT, "transient_lastDdlTime"):
        try:
            return float(properties[key])
        except (KeyError, ValueError):
            continue
    return 0.0


def _overlap(theirs: str, ours: str) -> bool:
    """Whether two jobs' partitions collide: the same one, or either writes the whole table."""
    return not theirs or not ours or theirs == ours


def _busy(dest: TableName, partition: str, name: TableName, age: float) -> str:
    where = f"{dest} partition {partition}" if partition else str(dest)
    return (f"another job is writing {where} right now (its staging table {name} was alive"
            f" {age:.0f} s ago); wait for it to finish. If that job died, the next job removes"
            f" its staging table once it has been silent for {STALE_AFTER / 60:.0f} minutes")


def _finish(spark: SparkSession, name: TableName, properties: dict[str, str]) -> None:
    staging = describe_table(spark, name)
    if staging is None:  # dropped meanwhile
        return
    folder = staging.location.rstrip("/")
    if folder and _in_use(spark, properties, folder):
        replaced = properties.get(REPLACES, "")
        if replaced:
            retire(spark, name, replaced)
        else:
            release(spark, name, folder)
    else:
        spark.sql(f"DROP TABLE IF EXISTS {name.sql}")


def _in_use(spark: SparkSession, properties: dict[str, str], folder: str) -> bool:
    """Whether the staging table's destination already uses ``folder``: its swap happened."""
    if FOR not in properties:
        return False
    dest = TableName.parse(properties[FOR])
    found = describe_table(spark, dest)
    if found is None:
        return False
    spec = properties.get(PARTITION, "")
    if not spec:
        return found.location.rstrip("/") == folder
    partition = tuple((key, value) for key, _, value in (p.partition("=") for p in spec.split("/")))
    used = partition_location(spark, dest, partition)
    return used is not None and used.rstrip("/") == folder


def retire(spark: SparkSession, staging: TableName, replaced: str) -> None:
    """Drop a swapped staging table together with ``replaced``, the folder the swap replaced.

    Dropping a managed table deletes the folder it points at, wherever that is: pointed at the
    replaced folder first, the staging table takes that folder with it.
    """
    spark.sql(f"ALTER TABLE {staging.sql} SET LOCATION '{sql_string(replaced)}'")
    spark.sql(f"DROP TABLE {staging.sql}")


def release(spark: SparkSession, staging: TableName, folder: str) -> None:
    """Drop a swapped staging table but keep its folder, now the destination's data.

    Its drop deletes whatever it points at: pointed first at the one file of the folder the
    data does not need (the ``_SUCCESS`` marker Spark's writer leaves), it takes only that.
    """
    marker = folder.rstrip("/") + "/_SUCCESS"
    spark.sql(f"ALTER TABLE {staging.sql} SET LOCATION '{sql_string(marker)}'")
    spark.sql(f"DROP TABLE {staging.sql}")
