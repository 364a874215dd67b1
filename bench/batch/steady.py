"""Steady-state batch jobs: one local Spark session, jobs timed once its JVM is warm.

Run by ``run.py``'s steady section as one child process: ``steady.py QUERY WAREHOUSE``. It
starts one session, then waits on stdin: each line ``round N`` runs one round of jobs, in an
order that rotates from round to round, and answers one line per job on stdout, then ``end``:

    job NAME SECONDS ROWS

NAME is ``copy``, ``no-op`` or a model's folder name (``fare-estimator``, ``costly``).

The jobs, each writing a new Parquet table (dropped afterwards, outside the clock):

* ``copy``: the query copied into a table, its rows counted by the write job (an observation),
  no Python step: the ceiling of any Spark job;
* ``no-op``: the columns pymlc reads (``trip_id`` and the four inputs), read by Spark and
  handed to a ``mapInArrow`` that turns each batch into ``trip_id`` and one double, written by
  Spark's writer: the floor of pymlc's one data path (Spark's reading, the Arrow hand-over to
  Python, the writing), the model, its checks and the metastore excluded;
* each model: ``pymlc``'s own driver (``spark_driver.main``) in this process, joining the
  session: the query check, warm-up, staging table and swap included, as in ``pymlc batch``.

Times include the query's analysis. The parent discards round 0 (the JVM's JIT warm-up, Python
worker start-up, first model loads). Progress and Spark's own output go to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from run import MODELS, generate

# A job writes the table it is given and returns its row count, or None to have it counted
# after the clock stops.
Job = Callable[[str], int | None]


def main() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql import DataFrame, Observation
    from pyspark.sql import functions as F

    from pymlc.runtime_stub import spark_driver
    from pymlc.runtime_stub.spark_score import PASSTHROUGH_PREFIX
    from pymlc.runtime_stub.spark_session import start_session

    query, warehouse = sys.argv[1], Path(sys.argv[2])
    spark, _ = start_session(app="bench-steady", master=None, warehouse=warehouse,
                             rows_per_batch=50_000, log=warehouse / "steady-spark.log")
    spark.sql("CREATE DATABASE IF NOT EXISTS bench")

    # The columns as pymlc's driver names them for its workers: passthrough ones prefixed.
    trip_id, distance = PASSTHROUGH_PREFIX + "trip_id", "trip_distance_km"
    inputs = ["trip_distance_km", "city", "pickup_hour", "passengers"]

    def no_op(batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            yield pa.RecordBatch.from_arrays(
                [batch.column(trip_id), pc.multiply(batch.column(distance), 2.0)],
                names=["trip_id", "fare"])

    def write(frame: DataFrame, table: str) -> int:
        rows = Observation()
        frame.observe(rows, F.count(F.lit(1)).alias("n")).write.format("parquet").saveAsTable(
            table)
        return int(rows.get["n"])

    def copy(table: str) -> int:
        return write(spark.sql(query), table)

    def no_op_job(table: str) -> int:
        columns = [F.col("trip_id").alias(trip_id), *(F.col(c) for c in inputs)]
        frame = spark.sql(query).select(*columns).mapInArrow(no_op, "trip_id BIGINT, fare DOUBLE")
        return write(frame, table)

    def pymlc(spec: Path) -> Job:
        config = generate(spec) / "model.json"

        def job(table: str) -> None:
            code = spark_driver.main(["--model-root", str(spec.parent), "--query", query,
                                      "--output-table", table], config_path=config)
            if code != 0:
                sys.exit(f"the pymlc driver exited {code} for {spec}")

        return job

    jobs: dict[str, Job] = {"copy": copy, "no-op": no_op_job}
    jobs.update({spec.parent.name: pymlc(spec) for spec in MODELS.values()})
    names, count = list(jobs), 0
    for line in sys.stdin:
        turn = int(line.split()[1]) % len(names)
        for name in names[turn:] + names[:turn]:
            count += 1
            table = f"bench.steady_{count}"
            started = time.perf_counter()
            rows = jobs[name](table)
            seconds = time.perf_counter() - started
            if rows is None:  # the driver has already checked that every row reached it
                rows = spark.table(table).count()
            spark.sql(f"DROP TABLE {table}")
            print(f"job {name} {seconds:.3f} {rows}", flush=True)
        print("end", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
