"""The batch job's plan, checked before any work: the query's columns against the spec's inputs,
the passthrough columns, and the destination table against the job's output.

Pure functions over plain column descriptions (name, Spark SQL type name, nullable), so they
need no Spark to run or to test; ``spark_driver`` feeds them from ``spark.sql(q).schema``.

Nullability: Spark marks most query columns nullable (every Parquet column, every outer join,
most expressions) even when no value is null, so a nullable query column for a non-nullable
input is *not* an error here. If a null does arrive, the runtime's input check (the same one the
server runs) fails the job, naming the column, and the destination table is left unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import FieldConfig, ModelConfig
from .types import COLUMN_TYPES

__all__ = [
    "Column",
    "JobPlan",
    "PlanError",
    "TableInfo",
    "check_destination",
    "plan_job",
    "spark_type_to_spec",
]

# Spark SQL type name (lower case, as ``DataType.simpleString()`` prints it) -> spec type,
# derived from the one type table's ``spark`` column.
_SPARK_TO_SPEC: dict[str, str] = {row.spark.lower(): row.name for row in COLUMN_TYPES.values()}
# File formats whose tables pymlc can swap atomically by pointing the table at a new folder.
SWAPPABLE_FORMATS = frozenset({"parquet", "orc"})


class PlanError(Exception):
    """The query or the destination does not fit the spec; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Column:
    """One column as Spark describes it: name, ``simpleString()`` type name, nullability."""

    name: str
    spark_type: str
    nullable: bool = True


@dataclass(frozen=True)
class TableInfo:
    """What the driver learned about an existing destination table."""

    columns: tuple[Column, ...]
    provider: str
    kind: str
    partitioned: bool


@dataclass(frozen=True)
class JobPlan:
    """What the job selects from the query and what it writes.

    Attributes:
        inputs: ``(query column, spec input, Spark type to cast to)`` in spec order.
        passthrough: ``(query column, output name)``, copied beside the predictions.
        output: the written columns: passthrough first, then the spec's outputs.
    """

    inputs: tuple[tuple[str, FieldConfig, str], ...]
    passthrough: tuple[tuple[str, str], ...]
    output: tuple[Column, ...]


def spark_type_to_spec(spark_type: str) -> str | None:
    """The spec column type of a Spark SQL type name (``"int"`` -> ``"int32"``), if any."""
    return _SPARK_TO_SPEC.get(spark_type.lower())


def plan_job(config: ModelConfig, query: Sequence[Column]) -> JobPlan:
    """Match the query's columns to the spec's inputs and passthrough columns.

    Names match case-insensitively, as Spark resolves them. A query column may have the input's
    type or a narrower one of the same family (``widens_to`` in the type table), which is cast
    up in Spark; anything else is reported with the cast that would fix it.

    Raises:
        PlanError: every missing, ambiguous or incompatible column, at once.
    """
    by_name: dict[str, list[Column]] = {}
    for given in query:
        by_name.setdefault(given.name.lower(), []).append(given)
    problems: list[str] = []
    inputs = []
    for field in config.inputs:
        column = _find(by_name, field.name, f"input {field.name!r} ({field.type})", problems)
        if column is not None and _check_type(column, field, problems):
            inputs.append((column.name, field, COLUMN_TYPES[field.type].spark))
    passthrough = []
    outputs = {f.name.lower() for f in config.outputs}
    for name in config.batch.passthrough:
        column = _find(by_name, name, f"passthrough column {name!r}", problems)
        if name.lower() in outputs:
            problems.append(f"passthrough column {name!r} has the name of a model output;"
                            " rename the output or drop it from batch.passthrough")
        elif column is not None:
            passthrough.append((column.name, name))
    if problems:
        raise PlanError(problems)
    return JobPlan(tuple(inputs), tuple(passthrough), _output(config, query, passthrough))


def _find(by_name: dict[str, list[Column]], name: str, what: str,
          problems: list[str]) -> Column | None:
    found = by_name.get(name.lower(), [])
    if not found:
        problems.append(f"missing column {name!r}: the query has no column for {what};"
                        f" select it, or alias an expression AS {name}")
        return None
    if len(found) > 1:
        problems.append(f"ambiguous column {name!r}: the query returns it {len(found)} times;"
                        " alias the duplicates apart")
        return None
    return found[0]


def _check_type(column: Column, field: FieldConfig, problems: list[str]) -> bool:
    target = COLUMN_TYPES[field.type]
    given = spark_type_to_spec(column.spark_type)
    if given == field.type or (given is not None and field.type in COLUMN_TYPES[given].widens_to):
        return True
    accepted = [row.spark for row in COLUMN_TYPES.values()
                if row.name == field.type or field.type in row.widens_to]
    problems.append(
        f"column {column.name!r} is {column.spark_type.upper()}, but input {field.name!r} is"
        f" {field.type} (Spark {target.spark}; accepted: {', '.join(accepted)}); cast it in the"
        f" query: CAST({_quote(column.name)} AS {target.spark}) AS {_quote(field.name)}")
    return False


def _output(config: ModelConfig, query: Sequence[Column],
            passthrough: Sequence[tuple[str, str]]) -> tuple[Column, ...]:
    types = {c.name: c.spark_type for c in query}
    columns = [Column(name, types[source]) for source, name in passthrough]
    columns += [Column(f.name, COLUMN_TYPES[f.type].spark.lower()) for f in config.outputs]
    return tuple(columns)


def check_destination(table: str, plan: JobPlan, existing: TableInfo | None) -> None:
    """Check that an existing destination can take the job's output.

    It must be a table (not a view) of a swappable file format, unpartitioned, with exactly the
    output's column names and types in order (nullability aside: file tables are all nullable).

    Raises:
        PlanError: every reason the table cannot be written, at once.
    """
    if existing is None:
        return
    problems = []
    if existing.kind.upper() == "VIEW":
        problems.append(f"{table} is a view; pymlc writes tables")
    if existing.provider.lower() not in SWAPPABLE_FORMATS:
        problems.append(f"{table} is stored as {existing.provider!r}; pymlc replaces tables"
                        f" atomically only in {' or '.join(sorted(SWAPPABLE_FORMATS))}:"
                        " drop it or choose another --output-table")
    if existing.partitioned:
        problems.append(f"{table} is partitioned; pymlc writes unpartitioned tables")
    want = [(c.name.lower(), c.spark_type.lower()) for c in plan.output]
    have = [(c.name.lower(), c.spark_type.lower()) for c in existing.columns]
    if want != have:
        problems.append(f"{table} has columns ({_describe(have)}) but the job writes"
                        f" ({_describe(want)}); drop the table or choose another --output-table")
    if problems:
        raise PlanError(problems)


def _describe(columns: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} {kind.upper()}" for name, kind in columns)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
