"""The batch job's destination, checked before any work: the table (or one partition of it) the
job writes, against the job's output.

Pure functions over plain descriptions, so they need no Spark to run or to test; the driver
feeds them from the metastore (``spark_table.describe_table``).

A destination is ``DB.TABLE``, optionally with one static partition (``--partition KEY=VALUE``,
repeatable). A partitioned table is created on first use with the job's columns followed by the
partition keys (``STRING`` columns, in the order given); an existing one must be partitioned by
exactly those keys, in any order. Keys are identifiers; values are short words of letters,
digits and ``- _ . : +`` (a date, an hour, a region code): no quote, slash or space can reach a
SQL statement or a path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .spark_plan import Column, JobPlan, PlanError

__all__ = ["SWAPPABLE_FORMATS", "PartitionSpec", "TableInfo", "check_destination",
           "describe_partition", "parse_partition"]

# File formats whose tables pymlc can swap atomically by pointing the table at a new folder.
SWAPPABLE_FORMATS = frozenset({"parquet", "orc"})
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}")

# One static partition: (key, value) pairs in the order given, keys in lower case (Hive's).
PartitionSpec = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableInfo:
    """What the driver learned about an existing destination table.

    Attributes:
        columns: its data columns (without the partition columns).
        provider: its file format (``parquet``), or ``hive`` for a Hive serde table.
        kind: ``MANAGED``, ``EXTERNAL`` or ``VIEW``.
        partitions: its partition columns, in the table's order.
        location: its folder's URI.
    """

    columns: tuple[Column, ...]
    provider: str
    kind: str
    partitions: tuple[Column, ...] = ()
    location: str = ""

    @property
    def managed(self) -> bool:
        """Whether the table's data is the metastore's to delete (not an external table)."""
        return self.kind.upper() == "MANAGED"


def parse_partition(items: Sequence[str]) -> PartitionSpec:
    """``KEY=VALUE`` items (``--partition``) as a partition spec.

    Raises:
        ValueError: an item is not ``KEY=VALUE``, a key is not an identifier or repeats, or a
            value holds anything but letters, digits and ``- _ . : +``.
    """
    spec: list[tuple[str, str]] = []
    for item in items:
        key, equals, value = item.partition("=")
        if not equals:
            raise ValueError(f"--partition {item!r}: expected KEY=VALUE, e.g. day=2024-05-01")
        if not _KEY.fullmatch(key):
            raise ValueError(f"--partition {item!r}: the key must be a column name (letters,"
                             " digits, underscores; not starting with a digit)")
        if not _VALUE.fullmatch(value) or ".." in value:
            raise ValueError(f"--partition {item!r}: a value is 1-128 letters, digits and"
                             " - _ . : + (starting with a letter or digit, no '..'), so that"
                             " it is safe in SQL and in paths")
        if key.lower() in (k for k, _ in spec):
            raise ValueError(f"--partition {key}: given twice")
        spec.append((key.lower(), value))
    return tuple(spec)


def describe_partition(spec: Sequence[tuple[str, str]]) -> str:
    """``day=2024-05-01/hour=7``, for messages."""
    return "/".join(f"{key}={value}" for key, value in spec)


def check_destination(table: str, plan: JobPlan, existing: TableInfo | None,
                      partition: PartitionSpec = ()) -> None:
    """Check that the destination can take the job's output.

    An existing destination must be a table (not a view) of a swappable file format,
    partitioned by exactly the keys given (none for an unpartitioned table), with exactly the
    output's column names and types in order besides them (nullability aside: file tables are
    all nullable). A partition key must not also be a written column.

    Raises:
        PlanError: every reason the table cannot be written, at once.
    """
    written = {c.name.lower() for c in plan.output}
    problems = [f"partition key {key!r} is also a column the job writes; choose another key"
                for key, _ in partition if key in written]
    if existing is not None:
        problems += _existing_problems(table, plan, existing, partition)
    if problems:
        raise PlanError(problems)


def _existing_problems(table: str, plan: JobPlan, existing: TableInfo,
                       partition: PartitionSpec) -> list[str]:
    problems = []
    if existing.kind.upper() == "VIEW":
        problems.append(f"{table} is a view; pymlc writes tables")
    if existing.provider.lower() not in SWAPPABLE_FORMATS:
        problems.append(f"{table} is stored as {existing.provider!r}; pymlc replaces tables"
                        f" atomically only in {' or '.join(sorted(SWAPPABLE_FORMATS))}:"
                        " drop it or choose another --output-table")
    have = sorted(c.name.lower() for c in existing.partitions)
    given = sorted(key for key, _ in partition)
    if have != given:
        problems.append(_keys_problem(table, existing.partitions, partition))
    want = [(c.name.lower(), c.spark_type.lower()) for c in plan.output]
    data = [(c.name.lower(), c.spark_type.lower()) for c in existing.columns]
    if want != data:
        problems.append(f"{table} has columns ({_describe(data)}) but the job writes"
                        f" ({_describe(want)}); drop the table or choose another --output-table")
    return problems


def _keys_problem(table: str, have: Sequence[Column], partition: PartitionSpec) -> str:
    keys = ", ".join(c.name for c in have)
    given = ", ".join(key for key, _ in partition)
    if not have:
        return (f"{table} is not partitioned, but --partition gives ({given}); drop --partition"
                " or choose another --output-table")
    if not partition:
        return (f"{table} is partitioned by ({keys}); give one --partition KEY=VALUE for each"
                " of its keys")
    return (f"{table} is partitioned by ({keys}), but --partition gives ({given}); give one"
            " --partition KEY=VALUE for each of the table's keys")


def _describe(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind.upper()}" for name, kind in columns)
