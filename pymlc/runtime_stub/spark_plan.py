"""The batch job's plan, checked before any work: the query's columns against the spec's inputs
and passthrough columns (the destination is ``spark_dest``'s).

Pure functions over plain column descriptions (name, Spark SQL type name), so they need no
Spark to run or to test; ``spark_output.analyse`` feeds them from ``DESCRIBE QUERY``.

Tensor models: each query row is one sample. A tensor input of shape ``[-1, d1, ..., dk]`` is a
column of ``k`` nested Spark arrays whose innermost element type is the type table's ``spark``
entry for the dtype (``pixels float32 [-1, 8, 8]`` is ``ARRAY<ARRAY<FLOAT>>``; a ``[-1]`` tensor
is a plain ``FLOAT`` column). The first dimension must be -1, the batch dimension, for inputs and
outputs alike; the sizes of the other dimensions are checked per batch by the worker.

Nullability: Spark marks most query columns nullable (every Parquet column, every outer join,
most expressions) even when no value is null, so a nullable query column for a non-nullable
input is *not* an error here. If a null does arrive, the runtime's input check (the same one the
server runs) fails the job, naming the column, and the destination table is left unchanged.

Timestamps: a ``timestamp`` input takes Spark's ``TIMESTAMP`` and also ``TIMESTAMP_NTZ``, the
type Spark gives naive timestamps (pandas' default when writing Parquet): a naive value is read
in the session time zone, UTC, as the server reads a naive value. Nanosecond timestamps
(``TIMESTAMP_NTZ(9)``/``TIMESTAMP_LTZ(9)``, pandas' default unit) are cast to microseconds,
Spark's and the spec's unit; a value with digits below the microsecond fails the job naming its
rows (the server refuses it too), so no digit is ever dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import FieldConfig, ModelConfig
from .types import COLUMN_TYPES, TENSOR_DTYPES

__all__ = [
    "Column",
    "JobPlan",
    "PlanError",
    "plan_job",
    "spark_type_to_spec",
    "tensor_spark_type",
]

# Spark SQL type name (lower case, as ``DataType.simpleString()`` prints it) -> spec type,
# derived from the one type table's ``spark`` column.
_SPARK_TO_SPEC: dict[str, str] = {row.spark.lower(): row.name for row in COLUMN_TYPES.values()}
# Spark types that hold a spec type's values under another name, and the Spark type they are
# cast to: naive timestamps are read in the session time zone (UTC, as the server reads them);
# CHAR/VARCHAR columns of a table are strings.
_READ_AS = {"timestamp_ntz": "timestamp", "char": "string", "varchar": "string"}
# ``TIMESTAMP_NTZ(9)``, ``TIMESTAMP_LTZ(7)``: timestamps with digits below the microsecond.
_FINE_TIMESTAMP = re.compile(r"timestamp_(ntz|ltz)\((\d+)\)")
# The microsecond types such a column is cast to, by its kind.
_MICROS = {"ntz": "timestamp_ntz", "ltz": "timestamp"}


class PlanError(Exception):
    """The query or the destination does not fit the spec; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Column:
    """One column as Spark describes it: name, type name (``simpleString()``), nullability."""

    name: str
    spark_type: str
    nullable: bool = True

    @classmethod
    def of(cls, field: Any) -> Column:
        """The column a Spark ``StructField`` describes."""
        return cls(field.name, field.dataType.simpleString(), field.nullable)


@dataclass(frozen=True)
class JobPlan:
    """What the job selects from the query and what it writes.

    Attributes:
        inputs: ``(query column, spec input, Spark type to cast to)`` in spec order.
        passthrough: ``(query column, output name, Spark type to cast to or "")``, copied
            beside the predictions (cast only to microsecond timestamps, or CHAR/VARCHAR
            to STRING).
        output: the written columns: passthrough first, then the spec's outputs.
        micros: ``(query column, name, query type)`` of the timestamps finer than microseconds
            among the inputs and passthrough columns: each value must be whole microseconds.
    """

    inputs: tuple[tuple[str, FieldConfig, str], ...]
    passthrough: tuple[tuple[str, str, str], ...]
    output: tuple[Column, ...]
    micros: tuple[tuple[str, str, str], ...] = ()


def spark_type_to_spec(spark_type: str) -> str | None:
    """The spec column type of a Spark SQL type name (``"int"`` -> ``"int32"``), if any.

    Besides the type table's own Spark types: ``timestamp_ntz`` (naive, read as UTC) and
    nanosecond timestamps are ``timestamp``; ``char(n)`` and ``varchar(n)`` are ``string``.
    """
    name = spark_type.lower().strip()
    found = _SPARK_TO_SPEC.get(name)
    if found is None and _FINE_TIMESTAMP.fullmatch(name):
        found = "timestamp"
    return found or _READ_AS.get(name.partition("(")[0])


def _stored_type(spark_type: str) -> str:
    """The type a passthrough column is written as: its own, but microseconds for a finer
    timestamp (Spark's unit) and STRING for CHAR/VARCHAR (as Spark's DataFrames hold them)."""
    name = spark_type.lower().strip()
    fine = _FINE_TIMESTAMP.fullmatch(name)
    if fine is not None:
        return _MICROS[fine.group(1)] if _finer_than_micros(name) else spark_type
    return "string" if name.partition("(")[0] in ("char", "varchar") else spark_type


def _finer_than_micros(spark_type: str) -> bool:
    fine = _FINE_TIMESTAMP.fullmatch(spark_type.lower().strip())
    return fine is not None and int(fine.group(2)) > 6


def tensor_spark_type(field: FieldConfig) -> str:
    """The Spark SQL type of one sample of a tensor: ``ARRAY<ARRAY<FLOAT>>`` for
    ``float32 [-1, 8, 8]``, ``BIGINT`` for ``int64 [-1]`` (one array level per dimension after
    the batch dimension; the element type from the type table)."""
    depth = _tensor_depth(field)
    return "ARRAY<" * depth + TENSOR_DTYPES[field.type].spark + ">" * depth


def _tensor_depth(field: FieldConfig) -> int:
    """Array levels of one sample: one per dimension after the batch dimension."""
    return max(len(field.shape or ()) - 1, 0)


def plan_job(config: ModelConfig, query: Sequence[Column]) -> JobPlan:
    """Match the query's columns to the spec's inputs and passthrough columns.

    Names match case-insensitively, as Spark resolves them. A query column may have the input's
    type or a narrower one of the same family (``widens_to`` in the type table), which is cast
    up in Spark; anything else is reported with the cast that would fix it. For a tensor model
    the same holds for the innermost element type of the nested arrays, whose depth must be
    the tensor's rank minus one; every tensor's first dimension must be -1.

    Raises:
        PlanError: every missing, ambiguous or incompatible column, at once.
    """
    by_name: dict[str, list[Column]] = {}
    for given in query:
        by_name.setdefault(given.name.lower(), []).append(given)
    problems: list[str] = []
    tensor = config.kind == "tensor"
    if tensor:
        _check_batch_dimension(config, problems)
    inputs, micros = [], []
    for field in config.inputs:
        column = _find(by_name, field.name, f"input {field.name!r} ({_shown(field)})", problems)
        if column is None:
            continue
        if tensor and _check_tensor(column, field, problems):
            inputs.append((column.name, field, tensor_spark_type(field)))
        elif not tensor and _check_type(column, field, problems):
            inputs.append((column.name, field, COLUMN_TYPES[field.type].spark))
            if _finer_than_micros(column.spark_type):
                micros.append((column.name, field.name, column.spark_type))
    passthrough = []
    outputs = {f.name.lower() for f in config.outputs}
    for name in config.batch.passthrough:
        column = _find(by_name, name, f"passthrough column {name!r}", problems)
        if name.lower() in outputs:
            problems.append(f"passthrough column {name!r} has the name of a model output;"
                            " rename the output or drop it from batch.passthrough")
        elif column is not None:
            stored = _stored_type(column.spark_type)
            passthrough.append((column.name, name, "" if stored == column.spark_type else stored))
            if _finer_than_micros(column.spark_type):
                micros.append((column.name, name, column.spark_type))
    if problems:
        raise PlanError(problems)
    return JobPlan(tuple(inputs), tuple(passthrough), _output(config, query, passthrough),
                   tuple(micros))


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


def _shown(field: FieldConfig) -> str:
    return field.type if field.shape is None else f"{field.type} {list(field.shape)}"


def _check_batch_dimension(config: ModelConfig, problems: list[str]) -> None:
    for role, fields in (("input", config.inputs), ("output", config.outputs)):
        for field in fields:
            shape = list(field.shape or ())
            if not shape or shape[0] != -1:
                fix = [-1, *shape[1:]] if shape else [-1]
                problems.append(
                    f"{role} {field.name!r} has shape {shape}: batch scoring needs -1 as the first"
                    f" dimension, the batch dimension (one query row per sample); declare shape:"
                    f" {fix} in the spec to score it in batch")


def _array_levels(spark_type: str) -> tuple[int, str]:
    """Nesting depth and innermost element type of a ``simpleString()`` type name."""
    depth, text = 0, spark_type.strip().lower()
    while text.startswith("array<") and text.endswith(">"):
        depth, text = depth + 1, text[len("array<"):-1].strip()
    return depth, text


def _check_tensor(column: Column, field: FieldConfig, problems: list[str]) -> bool:
    want_depth = _tensor_depth(field)
    element = TENSOR_DTYPES[field.type].spark
    target = spark_type_to_spec(element) or ""
    depth, given = _array_levels(column.spark_type)
    given_type = spark_type_to_spec(given)
    same_family = given_type == target or (
        given_type is not None and target in COLUMN_TYPES[given_type].widens_to)
    if depth == want_depth and same_family:
        return True
    wanted = tensor_spark_type(field)
    reasons = []
    if depth != want_depth:
        reasons.append(f"{_levels(depth)} of arrays where {_shown(field)} needs {want_depth}"
                       " (one per dimension after the batch dimension)")
    if not same_family:
        accepted = [row.spark for row in COLUMN_TYPES.values()
                    if row.name == target or target in row.widens_to]
        reasons.append(f"elements of type {given.upper()} where {field.type} needs"
                       f" {' or '.join(accepted)}")
    fix = (f"cast it in the query: CAST({_quote(column.name)} AS {wanted}) AS"
           f" {_quote(field.name)}" if depth == want_depth
           else f"select a column of {wanted} (one row per sample)")
    problems.append(
        f"column {column.name!r} is {column.spark_type.upper()}, but input {field.name!r}"
        f" ({_shown(field)}) is {wanted}: {'; '.join(reasons)}; {fix}")
    return False


def _levels(depth: int) -> str:
    return f"{depth} level{'s' * (depth != 1)}"


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
            passthrough: Sequence[tuple[str, str, str]]) -> tuple[Column, ...]:
    types = {c.name: c.spark_type for c in query}
    columns = [Column(name, cast or types[source]) for source, name, cast in passthrough]
    if config.kind == "tensor":
        columns += [Column(f.name, tensor_spark_type(f).lower()) for f in config.outputs]
    else:
        columns += [Column(f.name, COLUMN_TYPES[f.type].spark.lower()) for f in config.outputs]
    return tuple(columns)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
