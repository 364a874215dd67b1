"""Writing the destination table atomically: a failed job leaves the previous table as it was.

Spark's own writes are not atomic (measured): ``saveAsTable(mode="overwrite")`` drops the old
table before the job runs, and ``INSERT OVERWRITE`` empties it. So every job first writes a
*staging* table of its own (a unique name beside the destination), checks that it holds every
scored row, and only then touches the destination:

* no destination yet: the staging table (managed) is renamed to it, folder and all;
* overwrite: the staging table's folder (written beside the destination's) becomes the
  destination's location (``ALTER TABLE ... SET LOCATION`` + ``REFRESH``, one metastore call);
  a managed destination's old folder is deleted afterwards;
* append: the staging rows are inserted into the destination, after staging completed.

Whatever happens, the staging table is dropped and its folder deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .spark_plan import Column, TableInfo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["TableName", "WriteError", "describe_table", "write_atomically"]

STAGING_MARK = "__pyml_staging_"
DATA_MARK = "__pyml_"  # folder of a replaced table's data: <table>__pyml_<job id>
_MAX_NAME = 128  # the Hive metastore's limit on table names


class WriteError(Exception):
    """The staging table failed its check or the swap failed; the destination is unchanged."""


@dataclass(frozen=True)
class TableName:
    """A ``DB.TABLE`` name; Hive names are case-insensitive, so both parts are lower case."""

    database: str
    table: str

    @classmethod
    def parse(cls, text: str) -> TableName:
        database, _, table = text.rpartition(".")
        return cls((database or "default").lower(), table.lower())

    @property
    def sql(self) -> str:
        return f"`{self.database}`.`{self.table}`"

    def __str__(self) -> str:
        return f"{self.database}.{self.table}"


@dataclass
class _Staging:
    """The staging table and every folder that must not outlive the job."""

    name: TableName
    folder: str
    debris: list[str] = field(default_factory=list)


def describe_table(spark: SparkSession, name: TableName) -> TableInfo | None:
    """The existing table's columns, format, type and partitioning; None if it does not exist."""
    if not spark.catalog.databaseExists(name.database):
        return None
    if not spark.catalog.tableExists(str(name)):
        return None
    details = _details(spark, name)
    columns = tuple(Column(f.name, f.dataType.simpleString(), f.nullable)
                    for f in spark.table(name.sql).schema.fields)
    partitioned = any(c.isPartition for c in spark.catalog.listColumns(str(name)))
    return TableInfo(columns, details.get("Provider", "hive"), details.get("Type", "MANAGED"),
                     partitioned)


def _details(spark: SparkSession, name: TableName) -> dict[str, str]:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name.sql}").collect()
    return {str(r["col_name"]): str(r["data_type"]) for r in rows if r["col_name"]}


def write_atomically(spark: SparkSession, scored: DataFrame, dest: TableName, *, mode: str,
                     scored_rows: Callable[[], int], say: Callable[[str], None]) -> int:
    """Write ``scored`` to ``dest`` through a staging table; returns the rows written.

    Args:
        spark: the session.
        scored: the job's output (running it runs the model).
        dest: the destination table.
        mode: ``overwrite`` or ``append``.
        scored_rows: the number of rows the model scored, read after the staging write; the
            staging table must hold exactly that many.
        say: progress reporter.

    Raises:
        WriteError: staging failed its row-count check, or the swap failed.
        Exception: whatever the Spark job raised (e.g. the model's error); in every case the
            destination is left as it was and no staging table or folder survives.
    """
    existing = describe_table(spark, dest)
    created_database = _ensure_database(spark, dest.database)
    staging = _staging_for(spark, dest, existing, mode)
    swapped = False
    try:
        say(f"scoring into staging table {staging.name}")
        _write_staging(spark, scored, staging, existing, mode)
        rows = _check_staging(spark, staging, scored_rows())
        say(f"staging table complete: {rows} rows; {_verb(existing, mode)} {dest}")
        _swap(spark, staging, dest, existing, mode)
        swapped = True
        return rows
    finally:
        _clean_up(spark, staging)
        if created_database and not swapped:
            spark.sql(f"DROP DATABASE IF EXISTS `{dest.database}`")


def _verb(existing: TableInfo | None, mode: str) -> str:
    if existing is None:
        return "creating"
    return "appending to" if mode == "append" else "replacing"


def _ensure_database(spark: SparkSession, database: str) -> bool:
    if spark.catalog.databaseExists(database):
        return False
    spark.sql(f"CREATE DATABASE `{database}`")
    return True


def _staging_for(spark: SparkSession, dest: TableName, existing: TableInfo | None,
                 mode: str) -> _Staging:
    suffix = STAGING_MARK + uuid.uuid4().hex[:12]
    name = TableName(dest.database, dest.table[: _MAX_NAME - len(suffix)] + suffix)
    if existing is not None and mode == "overwrite":
        # Beside the destination's folder, so that pointing the destination at it is a rename
        # of nothing: same file system, same permissions.
        location = _details(spark, dest)["Location"].rstrip("/")
        data = dest.table[: _MAX_NAME - len(suffix)] + DATA_MARK + suffix[len(STAGING_MARK):]
        folder = f"{location.rpartition('/')[0]}/{data}"
    else:
        folder = spark.catalog.getDatabase(dest.database).locationUri.rstrip("/") + "/" + name.table
    return _Staging(name, folder, [folder])


def _write_staging(spark: SparkSession, scored: DataFrame, staging: _Staging,
                   existing: TableInfo | None, mode: str) -> None:
    fmt = existing.provider.lower() if existing is not None else "parquet"
    writer = scored.write.format(fmt)
    if existing is not None and mode == "overwrite":
        # External, so dropping the staging table later keeps the folder the destination uses.
        writer = writer.option("path", staging.folder)
    writer.saveAsTable(staging.name.sql)


def _check_staging(spark: SparkSession, staging: _Staging, expected: int) -> int:
    rows = spark.table(staging.name.sql).count()
    if rows != expected:
        raise WriteError(f"staging table {staging.name} holds {rows} rows but the model scored"
                         f" {expected}; the destination was not touched")
    return int(rows)


def _swap(spark: SparkSession, staging: _Staging, dest: TableName, existing: TableInfo | None,
          mode: str) -> None:
    if existing is None:
        spark.sql(f"ALTER TABLE {staging.name.sql} RENAME TO {dest.sql}")
        staging.debris.remove(staging.folder)  # renamed with the table
    elif mode == "append":
        spark.table(staging.name.sql).write.insertInto(dest.sql)
        spark.sql(f"REFRESH TABLE {dest.sql}")
    else:
        old = _details(spark, dest)["Location"]
        spark.sql(f"ALTER TABLE {dest.sql} SET LOCATION '{_sql_string(staging.folder)}'")
        spark.sql(f"REFRESH TABLE {dest.sql}")
        staging.debris.remove(staging.folder)  # now the destination's data
        if existing.kind.upper() == "MANAGED":
            staging.debris.append(old)  # a managed table's old data is ours to delete


def _clean_up(spark: SparkSession, staging: _Staging) -> None:
    spark.sql(f"DROP TABLE IF EXISTS {staging.name.sql}")
    for folder in staging.debris:
        _delete_folder(spark, folder)


def _delete_folder(spark: SparkSession, uri: str) -> None:
    # Through Hadoop's FileSystem, so that HDFS, S3 and local warehouses all work.
    jvm: Any = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.exists(path):
        fs.delete(path, True)


def _sql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
