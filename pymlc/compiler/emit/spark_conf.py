"""``spark-submit.conf``: the Spark properties a cluster run of the batch job needs.

Used as ``spark-submit --properties-file generated/spark-submit.conf generated/batch_job.py
...``: the model's batch image as driver and executor image, the image's Python for the workers,
Arrow batches of ``batch.rows_per_batch`` rows, reused Python workers (a fresh one spends
seconds importing the model's libraries), UTC timestamps and the Hive catalog. Cluster-specific
settings (master, resources, the metastore) stay with whoever submits.
"""

from __future__ import annotations

from ..ir import BuildPlan
from .base import Artifact, header, render

__all__ = ["SPARK_CONF", "emit_spark_conf", "properties_value", "spark_properties"]

SPARK_CONF = "spark-submit.conf"


def emit_spark_conf(plan: BuildPlan) -> list[Artifact]:
    content = render(SPARK_CONF + ".jinja", header=header(plan),
                     job="local://" + plan.layout.batch_job_path,
                     properties=spark_properties(plan))
    return [Artifact(SPARK_CONF, content)]


def spark_properties(plan: BuildPlan) -> list[tuple[str, str]]:
    """The properties, sorted by key, values escaped for a Java properties file."""
    layout = plan.layout
    properties = {
        "spark.app.name": f"pymlc-batch-{plan.name}",
        "spark.kubernetes.container.image": plan.image.batch_reference,
        "spark.kubernetes.driverEnv.PYML_MODEL_ROOT": layout.model,
        "spark.executorEnv.PYML_MODEL_ROOT": layout.model,
        "spark.pyspark.driver.python": layout.python,
        "spark.pyspark.python": layout.python,
        "spark.python.worker.reuse": "true",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(plan.batch.rows_per_batch),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    return [(key, properties_value(value)) for key, value in sorted(properties.items())]


def properties_value(value: object) -> str:
    """A value for a Java properties file: one line, backslashes and leading blanks escaped."""
    text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + text if text[:1] in (" ", "\t") else text
