"""What the batch job reads from the metastore, and how it names tables in SQL.

Everything here is Spark SQL or the ``spark.catalog`` API, nothing of py4j: it works alike with
a local session, on a cluster and through Spark Connect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .spark_dest import PartitionSpec, TableInfo
from .spark_plan import Column

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["TableName", "describe_table", "partition_location", "partition_sql", "sql_string",
           "table_properties"]


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


def describe_table(spark: SparkSession, name: TableName) -> TableInfo | None:
    """The existing table's columns, format, type, partition columns and location; None if none.

    Three metastore calls: whether it exists, its columns (``isPartition`` tells the partition
    columns apart) and ``DESCRIBE TABLE EXTENDED`` (format, type, location).
    """
    if not spark.catalog.tableExists(str(name)):  # also False when the database is missing
        return None
    details = _details(spark, f"DESCRIBE TABLE EXTENDED {name.sql}")
    listed = spark.catalog.listColumns(str(name))
    data = tuple(Column(c.name, c.dataType) for c in listed if not c.isPartition)
    keys = tuple(Column(c.name, c.dataType) for c in listed if c.isPartition)
    return TableInfo(data, details.get("Provider", "hive"), details.get("Type", "MANAGED"),
                     keys, details.get("Location", ""))


def partition_location(spark: SparkSession, name: TableName,
                       partition: PartitionSpec) -> str | None:
    """The folder of one partition of ``name``, or None if the table has no such partition."""
    spec = partition_sql(partition)
    if not spark.sql(f"SHOW PARTITIONS {name.sql} {spec}").collect():
        return None
    return _details(spark, f"DESCRIBE TABLE EXTENDED {name.sql} {spec}").get("Location")


def table_properties(spark: SparkSession, name: TableName) -> dict[str, str]:
    """The table's properties (``TBLPROPERTIES``)."""
    rows = spark.sql(f"SHOW TBLPROPERTIES {name.sql}").collect()
    return {str(r["key"]): str(r["value"]) for r in rows}


def _details(spark: SparkSession, statement: str) -> dict[str, str]:
    """A ``DESCRIBE ... EXTENDED`` statement's detail rows (``col_name`` -> ``data_type``) after
    its ``# Detailed ... Information`` header, the first of each name: the columns before the
    header cannot shadow them, and a partition's own ``Location`` comes before its table's."""
    found: dict[str, str] = {}
    detailed = False
    for row in spark.sql(statement).collect():
        name = str(row["col_name"] or "")
        detailed = detailed or name.startswith("# Detailed")
        if detailed and name:
            found.setdefault(name, str(row["data_type"]))
    return found


def partition_sql(partition: PartitionSpec) -> str:
    """``PARTITION (`day` = '2024-05-01')`` (keys and values are validated: ``spark_dest``)."""
    pairs = ", ".join(f"`{key}` = '{sql_string(value)}'" for key, value in partition)
    return f"PARTITION ({pairs})"


def sql_string(text: str) -> str:
    """``text`` escaped for a single-quoted Spark SQL string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")
