"""Writing the destination table atomically: a failed job leaves the previous table as it was.

Spark's own writes are not atomic (measured): ``saveAsTable(mode="overwrite")`` drops the old
table before the job runs, and ``INSERT OVERWRITE`` empties it. So every job first writes a
*staging* table of its own (a unique name beside the destination), checks that every row of the
query reached it (counted by the write job itself), and only then touches the destination:

* no destination yet: the staging table (managed) is renamed to it, folder and all;
* overwrite: the staging table's folder (written beside the destination's) becomes the
  destination's location (``ALTER TABLE ... SET LOCATION`` + ``REFRESH``, one metastore call);
  a managed destination's old folder is deleted afterwards;
* append: the staging rows are inserted into the destination, after staging completed.

In local mode a Parquet staging table's files are written by the Python workers themselves
(``Output.files``) whenever pyarrow writes them as Spark would (``_pyarrow_options``);
otherwise, for ORC and on a cluster, Spark's writer writes them (``Output.frame``).

Whatever happens, the staging table is dropped and its folder deleted. A job killed outright
(``kill -9``) cannot clean up; the next job against the same database removes its debris once it
is a few minutes old (``clean_debris``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .spark_plan import Column, TableInfo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

__all__ = ["STALE_AFTER", "Output", "TableName", "WriteError", "clean_debris", "describe_table",
           "local_path", "write_atomically"]

STAGING_MARK = "__pyml_staging_"
DATA_MARK = "__pyml_"  # folder of a replaced table's data: <table>__pyml_<job id>
_MAX_NAME = 128  # the Hive metastore's limit on table names
# Debris of a killed job is removed by the next job once it has not changed for this long.
STALE_AFTER = 300.0
# Spark's Parquet codec names -> pyarrow's, for the codecs both write alike.
_PYARROW_CODECS = {"snappy": "snappy", "gzip": "gzip", "zstd": "zstd", "brotli": "brotli",
                   "lz4_raw": "lz4", "none": "none", "uncompressed": "none"}
# Spark's timestamp encodings -> pyarrow's options for the same.
_PYARROW_TIMESTAMPS: dict[str, dict[str, Any]] = {
    "INT96": {"use_deprecated_int96_timestamps": True},
    "TIMESTAMP_MICROS": {"coerce_timestamps": "us"}}
# Spark types that pyarrow writes to Parquet as Spark's own writer does (arrays of them too).
# (``DataType.typeName()``: timestamp_ntz, maps, structs and intervals are not among them.)
_PYARROW_TYPES = frozenset({"boolean", "byte", "short", "integer", "long", "float", "double",
                            "string", "binary", "date", "timestamp", "decimal"})


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


@dataclass(frozen=True)
class Output:
    """The job's scored rows, not computed yet, and the two ways of writing them.

    Attributes:
        schema: the scored rows' schema.
        frame: the scored rows, for Spark's writer.
        counts: read after ``frame`` was written: the rows the query gave the model and
            the rows that reached Spark's writer.
        files: runs the job with each Python worker writing its rows as Parquet files
            (``spark_score.write_parquet``) into a local folder, with the given
            ``ParquetWriter`` options; returns the same two counts.
    """

    schema: StructType
    frame: Callable[[], DataFrame]
    counts: Callable[[], tuple[int, int]]
    files: Callable[[Path, dict[str, Any]], tuple[int, int]]


@dataclass
class _Staging:
    """The staging table and every folder that must not outlive the job."""

    name: TableName
    folder: str
    debris: list[str] = field(default_factory=list)
    dropped: bool = False  # renamed to the destination: no staging table left to drop


def describe_table(spark: SparkSession, name: TableName) -> TableInfo | None:
    """The existing table's columns, format, type, partitioning and location; None if none.

    Three metastore calls: whether it exists, ``DESCRIBE TABLE EXTENDED`` (details and the
    partition columns) and its schema.
    """
    if not spark.catalog.tableExists(str(name)):  # also False when the database is missing
        return None
    details = _details(spark, name)
    columns = tuple(Column.of(f) for f in spark.table(name.sql).schema.fields)
    partitioned = "# Partition Information" in details
    return TableInfo(columns, details.get("Provider", "hive"), details.get("Type", "MANAGED"),
                     partitioned, details.get("Location", ""))


def _details(spark: SparkSession, name: TableName) -> dict[str, str]:
    """``DESCRIBE TABLE EXTENDED``: its ``col_name`` -> ``data_type`` rows (``Location``,
    ``Provider``, ``Type``, and a ``# Partition Information`` header for a partitioned table)."""
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name.sql}").collect()
    return {str(r["col_name"]): str(r["data_type"]) for r in rows if r["col_name"]}


def write_atomically(spark: SparkSession, output: Output, dest: TableName, *,
                     existing: TableInfo | None, mode: str, say: Callable[[str], None]) -> int:
    """Write ``output`` to ``dest`` through a staging table; returns the rows written.

    The rows the query gave the model and the rows written to the staging table are both
    counted by the write job itself (no second pass over the data); they must agree.

    Args:
        spark: the session.
        output: the job's output (running it runs the model).
        dest: the destination table.
        existing: what ``describe_table`` found at ``dest`` (checked by the caller).
        mode: ``overwrite`` or ``append``.
        say: progress reporter.

    Raises:
        WriteError: staging failed its row-count check, or the swap failed.
        Exception: whatever the Spark job raised (e.g. the model's error); in every case the
            destination is left as it was and no staging table or folder survives.
    """
    created_database = _ensure_database(spark, dest.database)
    if not created_database:
        clean_debris(spark, dest, existing, say=say)
    staging = _staging_for(spark, dest, existing, mode)
    swapped = False
    try:
        say(f"scoring into staging table {staging.name}")
        given, written = _write_staging(spark, output, staging, existing, mode)
        rows = _check_staging(staging, given, written)
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
        location = existing.location.rstrip("/")
        data = dest.table[: _MAX_NAME - len(suffix)] + DATA_MARK + suffix[len(STAGING_MARK):]
        folder = f"{location.rpartition('/')[0]}/{data}"
    else:
        folder = spark.catalog.getDatabase(dest.database).locationUri.rstrip("/") + "/" + name.table
    return _Staging(name, folder, [folder])


def _write_staging(spark: SparkSession, output: Output, staging: _Staging,
                   existing: TableInfo | None, mode: str) -> tuple[int, int]:
    """Write the staging table; returns the rows the query gave and the rows written."""
    fmt = existing.provider.lower() if existing is not None else "parquet"
    # External when it replaces a destination's data, so that dropping the staging table
    # later keeps the folder the destination then uses.
    external = existing is not None and mode == "overwrite"
    folder = local_path(spark, staging.folder)
    options = _pyarrow_options(spark, output.schema)
    if fmt == "parquet" and folder is not None and options is not None:
        spark.catalog.createTable(str(staging.name), path=staging.folder if external else None,
                                  source="parquet", schema=output.schema)
        counts = output.files(folder, options)
        spark.sql(f"REFRESH TABLE {staging.name.sql}")
        return counts
    writer = output.frame().write.format(fmt)
    if external:
        writer = writer.option("path", staging.folder)
    writer.saveAsTable(staging.name.sql)
    return output.counts()


def local_path(spark: SparkSession, uri: str) -> Path | None:
    """The path at ``uri`` if every Python worker can reach it: local mode, local files."""
    parts = urlsplit(uri)
    if not str(spark.sparkContext.master).startswith("local") or parts.scheme not in ("", "file"):
        return None
    return Path(unquote(parts.path))


def _pyarrow_options(spark: SparkSession, schema: StructType) -> dict[str, Any] | None:
    """``ParquetWriter`` options that write ``schema`` as the session's Spark would; None if
    pyarrow cannot (another codec or timestamp encoding, the legacy format, a map, ...)."""
    conf = spark.conf
    codec = _PYARROW_CODECS.get(str(conf.get("spark.sql.parquet.compression.codec")).lower())
    timestamps = _PYARROW_TIMESTAMPS.get(str(conf.get("spark.sql.parquet.outputTimestampType")))
    legacy = str(conf.get("spark.sql.parquet.writeLegacyFormat")).lower() == "true"
    if codec is None or timestamps is None or legacy \
            or not all(_pyarrow_writes(f.dataType) for f in schema.fields):
        return None
    return {"compression": codec, "store_decimal_as_integer": True, **timestamps}


def _pyarrow_writes(kind: DataType) -> bool:
    from pyspark.sql.types import ArrayType

    if isinstance(kind, ArrayType):
        return _pyarrow_writes(kind.elementType)
    return kind.typeName() in _PYARROW_TYPES


def _check_staging(staging: _Staging, query_rows: int, written: int) -> int:
    if written != query_rows:
        raise WriteError(f"the query gave the model {query_rows} rows but {written} reached"
                         f" staging table {staging.name}; the destination was not touched")
    return written


def _swap(spark: SparkSession, staging: _Staging, dest: TableName, existing: TableInfo | None,
          mode: str) -> None:
    if existing is None:
        spark.sql(f"ALTER TABLE {staging.name.sql} RENAME TO {dest.sql}")
        staging.debris.remove(staging.folder)  # renamed with the table
        staging.dropped = True
    elif mode == "append":
        spark.table(staging.name.sql).write.insertInto(dest.sql)
        spark.sql(f"REFRESH TABLE {dest.sql}")
    else:
        old = existing.location
        spark.sql(f"ALTER TABLE {dest.sql} SET LOCATION '{_sql_string(staging.folder)}'")
        spark.sql(f"REFRESH TABLE {dest.sql}")
        staging.debris.remove(staging.folder)  # now the destination's data
        if existing.kind.upper() == "MANAGED":
            staging.debris.append(old)  # a managed table's old data is ours to delete


def _clean_up(spark: SparkSession, staging: _Staging) -> None:
    if not staging.dropped:
        spark.sql(f"DROP TABLE IF EXISTS {staging.name.sql}")
    for folder in staging.debris:
        _delete_folder(spark, folder)


def _delete_folder(spark: SparkSession, uri: str) -> None:
    _FileSystem(spark).delete(uri)


def clean_debris(spark: SparkSession, dest: TableName, existing: TableInfo | None, *,
                 say: Callable[[str], None], stale_after: float = STALE_AFTER) -> None:
    """Remove what a killed job (``kill -9``, a lost driver) left beside ``dest``.

    Staging tables (``*__pyml_staging_*``) of the destination's database and, beside the
    destination, folders named like a staging table or like replaced data
    (``<table>__pyml_<id>``), once nothing in them changed for ``stale_after`` seconds, so a
    running job's staging is never touched. A folder that any table of the database still
    uses (a destination now points at its job's folder) is kept.

    Args:
        spark: the session.
        dest: the destination table.
        existing: the destination, if it exists.
        say: progress reporter.
        stale_after: seconds without a change after which debris is removed.
    """
    fs = _FileSystem(spark)
    now = time.time()
    for table in _tables(spark, dest.database, f"*{STAGING_MARK}*"):
        name = TableName(dest.database, table)
        location = _location(spark, name)
        if location and now - fs.last_change(location) > stale_after:
            say(f"dropping staging table {name} left by an earlier job")
            spark.sql(f"DROP TABLE IF EXISTS {name.sql}")
    database = spark.catalog.getDatabase(dest.database).locationUri.rstrip("/")
    parents = {database, existing.location.rstrip("/").rpartition("/")[0]} if existing \
        else {database}
    data = re.compile(re.escape(dest.table) + re.escape(DATA_MARK) + "[0-9a-f]{12}")
    stale = [folder for parent in parents for folder in fs.children(parent)
             if (STAGING_MARK in folder.rpartition("/")[2]
                 or data.fullmatch(folder.rpartition("/")[2]))
             and now - fs.last_change(folder) > stale_after]
    if not stale:
        return
    locations = (_location(spark, TableName(dest.database, t))
                 for t in _tables(spark, dest.database))
    used = {fs.qualified(location) for location in locations if location}
    for folder in stale:
        if fs.qualified(folder) not in used:
            say(f"deleting {folder} left by an earlier job")
            fs.delete(folder)


def _tables(spark: SparkSession, database: str, pattern: str = "*") -> list[str]:
    rows = spark.sql(f"SHOW TABLES IN `{database}` LIKE '{_sql_string(pattern)}'").collect()
    return [str(r["tableName"]) for r in rows if not r["isTemporary"]]


def _location(spark: SparkSession, name: TableName) -> str:
    return _details(spark, name).get("Location", "")


class _FileSystem:
    """Hadoop's FileSystem, so that HDFS, S3 and local warehouses all work."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm: Any = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self._conf)

    def qualified(self, uri: str) -> str:
        path, fs = self._path(uri)
        return str(fs.makeQualified(path).toString()).rstrip("/")

    def children(self, uri: str) -> list[str]:
        path, fs = self._path(uri)
        if not fs.exists(path):
            return []
        return [str(s.getPath().toString()) for s in fs.listStatus(path) if s.isDirectory()]

    def last_change(self, uri: str) -> float:
        """Seconds since the epoch of the newest change in the folder or below it."""
        path, fs = self._path(uri)
        if not fs.exists(path):
            return 0.0
        newest = fs.getFileStatus(path).getModificationTime()
        files = fs.listFiles(path, True)
        while files.hasNext():
            newest = max(newest, files.next().getModificationTime())
        return float(newest) / 1000

    def delete(self, uri: str) -> None:
        path, fs = self._path(uri)
        if fs.exists(path):
            fs.delete(path, True)


def _sql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
