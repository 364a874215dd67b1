"""The batch job's data path in Spark: the query analysed, its columns cast, the model mapped.

Every call here is a DataFrame or SQL API (nothing of py4j, no SparkContext on the data path),
so the same path runs locally, on a cluster and through Spark Connect.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ModelConfig
from .spark_plan import Column, JobPlan, plan_job
from .spark_rows import MICROS_PREFIX, PASSTHROUGH_PREFIX
from .spark_score import score_batches, warm_up
from .spark_session import context, large_var_types
from .spark_swap import Output
from .spark_tensor import score_tensor_batches

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["WarmUp", "analyse", "job_output"]


def analyse(spark: SparkSession, config: ModelConfig, query: str) -> tuple[DataFrame, JobPlan]:
    """The query's (analysed, not yet run) DataFrame and the job's plan.

    The query's columns come from ``DESCRIBE QUERY`` (Spark's own type names, which also
    describe types pyspark cannot, such as pandas' nanosecond timestamps); no Spark job runs.

    Raises:
        PlanError: the query does not fit the spec.
        Exception: Spark cannot analyse the query.
    """
    rows = spark.sql(f"DESCRIBE QUERY {query}").collect()
    columns = [Column(str(r["col_name"]), str(r["data_type"])) for r in rows]
    return spark.sql(query), plan_job(config, columns)


def job_output(spark: SparkSession, config: ModelConfig, root: Path, source: DataFrame,
               plan: JobPlan) -> Output:
    """The job's output, not computed yet: the query's inputs cast, scored by the model."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    selected = _selected(source, plan)
    types = {f.name: f.dataType for f in selected.schema.fields}
    fields = [T.StructField(name, types[PASSTHROUGH_PREFIX + name], True)
              for _, name, _ in plan.passthrough]
    fields += [T.StructField(c.name, T.DataType.fromDDL(c.spark_type), True)
               for c in plan.output[len(plan.passthrough):]]
    schema = T.StructType(fields)
    arrow_schema = to_arrow_schema(
        schema, timezone=str(spark.conf.get("spark.sql.session.timeZone")),
        prefers_large_types=large_var_types(spark))
    common: dict[str, Any] = {
        "config_path": str(config.path), "model_root": str(root.resolve()),
        "inputs": tuple(f.name for _, f, _ in plan.inputs),
        "passthrough": tuple(name for _, name, _ in plan.passthrough),
        "schema": arrow_schema, "micros": tuple(name for _, name, _ in plan.micros)}
    if config.kind == "tensor":
        score = functools.partial(score_tensor_batches, **common)
    else:
        score = functools.partial(score_batches, **common,
                                  nullable=tuple(f.nullable for f in config.outputs))
    given, written = Observation(), Observation()
    one = F.count(F.lit(1)).alias("rows")
    # Both counts are taken by the write job itself: no second pass over the data.
    frame = selected.observe(given, one).mapInArrow(score, schema).observe(written, one)
    return Output(schema=schema, frame=lambda: frame,
                  counts=lambda: (_count(given), _count(written)))


def _selected(source: DataFrame, plan: JobPlan) -> DataFrame:
    """The query's columns as the workers take them."""
    from pyspark.sql import functions as F

    # Safe casts (narrower types of the same family, naive or finer timestamps) happen here.
    columns = [F.col(_quoted(column)).cast(spark_type).alias(field.name)
               for column, field, spark_type in plan.inputs]
    columns += [(F.col(_quoted(column)).cast(cast) if cast else F.col(_quoted(column)))
                .alias(PASSTHROUGH_PREFIX + name) for column, name, cast in plan.passthrough]
    # For a finer timestamp: whether its value survives the cast to microseconds unchanged.
    columns += [F.expr(f"{_quoted(column)} = CAST(CAST({_quoted(column)} AS"
                       f" {_micro_type(kind)}) AS {kind})").alias(f"{MICROS_PREFIX}{index}")
                for index, (column, _, kind) in enumerate(plan.micros)]
    return source.select(*columns)


def _micro_type(spark_type: str) -> str:
    return "TIMESTAMP_NTZ" if "ntz" in spark_type.lower() else "TIMESTAMP"


def _count(observation: Any) -> int:
    return int(observation.get["rows"])


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class WarmUp:
    """A background job of one tiny task per core that loads the model into Python workers."""

    def __init__(self, spark: SparkSession, config: ModelConfig, root: Path) -> None:
        self._spark = spark
        self._tag = f"pymlc-warm-up-{id(self)}"
        found = context(spark)
        self._cores = int(found.defaultParallelism) if found is not None else 0
        fn = functools.partial(warm_up, config_path=str(config.path),
                               model_root=str(root.resolve()))
        self._thread = threading.Thread(target=self._run, args=(fn,), name="pymlc-warm-up",
                                        daemon=True)
        if self._cores:
            self._thread.start()

    def _run(self, fn: Any) -> None:
        try:
            self._spark.addTag(self._tag)  # this thread's operations only
            cores = self._cores
            self._spark.range(0, cores, 1, cores).mapInArrow(fn, "id BIGINT").collect()
        except Exception:  # a model that cannot load fails the real job, with its message
            pass

    def stop(self) -> None:
        """Interrupt the warm-up if it still runs (the job's own tasks start workers anyway)."""
        if self._thread.is_alive():
            try:
                self._spark.interruptTag(self._tag)
            except Exception:  # the session is stopping
                pass
            self._thread.join(timeout=30)
