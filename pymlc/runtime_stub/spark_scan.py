"""Reading a plain query's Parquet files in the Python workers, with no Spark step between.

In local mode the workers share the driver's file system. When the query only selects (and
perhaps renames) columns of one unpartitioned Parquet table or folder, each worker reads its
share of the files' row groups with pyarrow, scores them and writes its staging file
(``spark_score.write_parquet``): Spark's JVM neither decodes the rows nor converts them to Arrow
for the workers, which measured ~1.3 s of CPU per 1M rows on 2 cores, more than the ridge
model itself. Spark still plans the query, runs the tasks (``mapInArrow`` over one row per task,
the same Python workers the warm-up started) and keeps the metastore.

The workers read exactly what Spark would, or Spark reads the query (:func:`plan_scan` says
why), when any of these does not hold:

* the master is local and every file is a ``file:`` path (at most ``MAX_FILES`` files);
* the optimized plan is the relation itself, or a projection of its columns (``a AS b``):
  no filter, expression, join, limit, aggregate, partition column or bucket pruning;
* every column read is boolean, an integer, a float, a string or bytes, and every file holds
  it under that exact name and Arrow type (a dictionary-encoded column, or a large string,
  counts as its plain type), so no schema merging, widening or case folding is involved;
* Spark would not skip corrupt or missing files, nor match columns by Parquet field id;
* ``spark.pymlc.batch.readFiles`` is not ``false``.

Inputs are cast to the spec's types as Spark would cast them (each a widening within one
family, exact). The rows the query gives are the files' row counts, from their footers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .spark_plan import JobPlan
from .spark_score import PASSTHROUGH_PREFIX, write_parquet
from .spark_session import large_var_types
from .spark_table import local_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["MAX_FILES", "READ_FILES", "FileScan", "ReadColumn", "plan_scan", "run_scan",
           "score_files"]

# Spark conf that turns the workers' reading off (``false``); on by default.
READ_FILES = "spark.pymlc.batch.readFiles"
# Beyond this many files the driver does not read every footer: Spark reads the query.
MAX_FILES = 1000
# Spark types (``DataType.typeName()``) whose Parquet columns pyarrow reads as Spark does.
_FLAT_TYPES = frozenset({"boolean", "byte", "short", "integer", "long", "float", "double",
                         "string", "binary"})
# Relation options that change neither which files are read nor how they are decoded.
_HARMLESS_OPTIONS = frozenset({"path", "serialization.format", "mergeschema"})
# Session settings under which Spark reads files differently; each must be "false".
_SPARK_READ_SETTINGS = ("spark.sql.files.ignoreCorruptFiles",
                        "spark.sql.files.ignoreMissingFiles",
                        "spark.sql.parquet.fieldId.read.enabled")


@dataclass(frozen=True)
class ReadColumn:
    """One column the workers build from the files.

    Attributes:
        source: the column's name in the files.
        name: its name in the batches the model is given (``PASSTHROUGH_PREFIX`` for
            passthrough columns, as Spark's path names them).
        arrow_type: its Arrow type there (the spec's type for an input).
    """

    source: str
    name: str
    arrow_type: pa.DataType


@dataclass(frozen=True)
class Piece:
    """Rows ``start`` to ``stop`` of row group ``group`` of the file at ``path``."""

    path: str
    group: int
    start: int
    stop: int
    whole: bool  # the piece is the whole row group


@dataclass(frozen=True)
class FileScan:
    """What each task reads: ``tasks[i]`` is partition ``i``'s pieces, in order."""

    tasks: tuple[tuple[Piece, ...], ...]
    columns: tuple[ReadColumn, ...]
    rows: int
    files: int
    rows_per_batch: int


def plan_scan(spark: SparkSession, source: DataFrame, plan: JobPlan,
              rows_per_batch: int) -> FileScan | str:
    """How the workers read the query's files themselves, or why Spark reads the query.

    Args:
        spark: the session.
        source: the query's analysed DataFrame.
        plan: the job plan (``spark_plan.plan_job``).
        rows_per_batch: the spec's ``batch.rows_per_batch``.

    Returns:
        The scan, or the reason (a short phrase) why the workers cannot read the files.
    """
    if str(spark.conf.get(READ_FILES, "true")).lower() == "false":
        return f"{READ_FILES} is false"
    for setting in _SPARK_READ_SETTINGS:
        if str(spark.conf.get(setting, "false")).lower() != "false":
            return f"{setting} is set"
    try:
        found = _relation(source)
    except Exception as exc:  # a plan of a shape this code does not know: Spark reads it
        return f"its plan cannot be inspected ({type(exc).__name__})"
    if isinstance(found, str):
        return found
    sources, uris = found
    columns = _columns(spark, source, plan, sources)
    if isinstance(columns, str):
        return columns
    paths = []
    for uri in uris:
        path = local_path(spark, uri)
        if path is None:
            return f"the workers cannot reach {uri} (a local master and local files are needed)"
        paths.append(str(path))
    if len(paths) > MAX_FILES:
        return f"it reads {len(paths)} files, more than {MAX_FILES}"
    groups = _row_groups(paths, columns)
    if isinstance(groups, str):
        return groups
    cores = spark.sparkContext.defaultParallelism
    tasks = _tasks(groups, cores=cores, rows_per_batch=rows_per_batch)
    return FileScan(tasks, columns, sum(rows for _, _, rows in groups), len(paths),
                    rows_per_batch)


def _relation(source: DataFrame) -> tuple[list[str], list[str]] | str:
    """The file column under each query column, and the files; or why there are none."""
    node = source._jdf.queryExecution().optimizedPlan()
    project = None
    if _kind(node) == "Project":
        project = _seq(node.projectList())
        node = node.child()
    if _kind(node) != "LogicalRelation":
        return f"it is more than a selection of columns ({node.nodeName()})"
    relation = node.relation()
    if _kind(relation) != "HadoopFsRelation" or _kind(relation.fileFormat()) != "ParquetFileFormat":
        return "it does not read Parquet files"
    if relation.partitionSchema().length() > 0:
        return "it reads a partitioned table"
    options = relation.options().keys().iterator()
    while options.hasNext():
        key = str(options.next())
        if key.lower() not in _HARMLESS_OPTIONS:
            return f"it reads with option {key!r}"
    names = {attr.exprId().id(): str(attr.name()) for attr in _seq(node.output())}
    if project is None:
        sources = list(names.values())
    else:
        sources = []
        for item in project:
            if _kind(item) == "Alias":
                item = item.child()
            if _kind(item) != "AttributeReference" or item.exprId().id() not in names:
                return "it computes a column"
            sources.append(names[item.exprId().id()])
    return sources, [str(uri) for uri in relation.location().inputFiles()]


def _kind(node: Any) -> str:
    return str(node.getClass().getSimpleName())


def _seq(seq: Any) -> list[Any]:
    return [seq.apply(i) for i in range(seq.size())]


def _columns(spark: SparkSession, source: DataFrame, plan: JobPlan,
             sources: Sequence[str]) -> tuple[ReadColumn, ...] | str:
    """The columns the workers build: the inputs (cast to the spec's types), the passthrough."""
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_type

    large = large_var_types(spark)
    fields = {f.name: (f.dataType, file) for f, file in zip(source.schema.fields, sources,
                                                             strict=True)}
    wanted = [(query, field.name, T._parse_datatype_string(spark_type))
              for query, field, spark_type in plan.inputs]
    wanted += [(query, PASSTHROUGH_PREFIX + name, fields[query][0])
               for query, name in plan.passthrough]
    columns = []
    for query, name, spark_type in wanted:
        given, file = fields[query]
        if given.typeName() not in _FLAT_TYPES:
            return f"column {query!r} is {given.simpleString().upper()}"
        columns.append(ReadColumn(file, name, to_arrow_type(spark_type,
                                                            prefers_large_types=large)))
    return tuple(columns)


def _row_groups(paths: Sequence[str],
                columns: Sequence[ReadColumn]) -> list[tuple[str, int, int]] | str:
    """Every non-empty row group as ``(path, index, rows)``; or why a file does not fit."""
    import pyarrow.parquet as pq

    groups = []
    for path in sorted(paths):
        try:
            with pq.ParquetFile(path) as parquet:
                schema, meta = parquet.schema_arrow, parquet.metadata
        except (OSError, pa.ArrowException) as exc:
            return f"{path} cannot be read ({exc})"
        for column in columns:
            index = schema.get_field_index(column.source)
            if index < 0:
                return f"{path} has no column {column.source!r} under that exact name"
            if not _same_values(schema.field(index).type, column.arrow_type):
                return (f"column {column.source!r} of {path} is {schema.field(index).type},"
                        f" not {column.arrow_type}")
        groups += [(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                   if meta.row_group(g).num_rows > 0]
    return groups


def _same_values(given: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a file column of type ``given`` holds exactly what Spark reads as ``wanted``
    (or a narrower integer or float it widens to ``wanted``, as the query's cast would)."""
    if pa.types.is_dictionary(given):
        given = given.value_type
    if pa.types.is_integer(given) and pa.types.is_integer(wanted):
        return bool(pa.types.is_signed_integer(given) and given.bit_width <= wanted.bit_width)
    if pa.types.is_floating(given) and pa.types.is_floating(wanted):
        return bool(32 <= given.bit_width <= wanted.bit_width)
    for family in (_is_text, _is_bytes):
        if family(given) and family(wanted):
            return True
    return bool(given == wanted)


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_bytes(kind: pa.DataType) -> bool:
    return bool(pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def _tasks(groups: Sequence[tuple[str, int, int]], *, cores: int,
           rows_per_batch: int) -> tuple[tuple[Piece, ...], ...]:
    """The rows dealt into one task per core (fewer if there are not a batch's rows for each):
    consecutive ranges of equal size, each a list of pieces of row groups.

    One task per core, because each Python task costs Spark ~30-60 ms of set-up (measured:
    ten no-op ``mapInArrow`` tasks on 2 cores took 0.38 s, two took 0.13 s), and equal ranges
    keep the cores equally busy. A row group cut between two tasks is decoded by both.
    """
    total = sum(rows for _, _, rows in groups)
    count = max(1, min(cores, math.ceil(total / rows_per_batch)))
    bounds = [total * k // count for k in range(count + 1)]
    tasks: list[list[Piece]] = [[] for _ in range(count)]
    at = 0  # the first row of the current group, counted over all groups
    for path, group, rows in groups:
        for k in range(count):
            low, high = max(bounds[k], at), min(bounds[k + 1], at + rows)
            if low < high:
                tasks[k].append(Piece(path, group, low - at, high - at, high - low == rows))
        at += rows
    return tuple(tuple(task) for task in tasks if task)


def read_pieces(pieces: Sequence[Piece], columns: Sequence[ReadColumn],
                rows_per_batch: int) -> Iterator[pa.RecordBatch]:
    """The pieces' rows as record batches of the columns, as Spark's path would give them."""
    import pyarrow.parquet as pq

    sources = list(dict.fromkeys(c.source for c in columns))
    schema = pa.schema([pa.field(c.name, c.arrow_type) for c in columns])
    for piece in pieces:
        with pq.ParquetFile(piece.path) as parquet:
            if piece.whole:
                batches: Iterator[pa.RecordBatch] = parquet.iter_batches(
                    batch_size=rows_per_batch, row_groups=[piece.group], columns=sources,
                    use_threads=False)
            else:
                table = parquet.read_row_group(piece.group, columns=sources, use_threads=False)
                batches = iter(table.slice(piece.start, piece.stop - piece.start)
                               .to_batches(max_chunksize=rows_per_batch))
            for batch in batches:
                yield pa.RecordBatch.from_arrays(
                    [_as(batch.column(c.source), c.arrow_type) for c in columns], schema=schema)


def _as(array: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array if array.type == arrow_type else array.cast(arrow_type)


def score_files(tasks: Iterator[pa.RecordBatch], *, scan: FileScan,
                score: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
                folder: str, options: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """One task: read this partition's pieces, score them, write the staging file.

    Mapped over ``spark.range(len(scan.tasks))`` split one row per partition: the partition
    id picks the pieces (``write_parquet`` names the file after it).

    Yields:
        What ``write_parquet`` yields: one batch of one row, the rows written.
    """
    from pyspark import TaskContext

    for _ in tasks:  # the task's one id row: the pieces come from the partition id
        pass
    context = TaskContext.get()
    pieces = scan.tasks[context.partitionId() if context else 0]
    yield from write_parquet(read_pieces(pieces, scan.columns, scan.rows_per_batch),
                             score=score, folder=folder, options=options)


def run_scan(spark: SparkSession, scan: FileScan,
             score: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
             folder: Path | str, options: dict[str, Any]) -> int:
    """Run ``scan``: one task per entry of ``scan.tasks``, each reading its pieces, scoring
    them with ``score`` and writing its file into ``folder``; returns the rows written."""
    tasks = len(scan.tasks)
    if not tasks:
        return 0
    fn = functools.partial(score_files, scan=scan, score=score, folder=str(folder),
                           options=options)
    # One id per partition: the partition id picks the task's pieces.
    job = spark.range(0, tasks, 1, tasks).mapInArrow(fn, "rows BIGINT")
    return sum(int(r["rows"]) for r in job.collect())
