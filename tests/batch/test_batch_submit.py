"""``spark-submit`` of the generated ``batch_job.py`` with the generated ``spark-submit.conf``, on
the host (pyspark's own ``bin/spark-submit``): the job takes spark-submit's session, names its
master, and scores exactly as in-process. The image's paths in the conf (its Python) are
overridden with ``--conf`` as a cluster user overrides them; the metastore and warehouse are the
submitter's settings, kept out of the working folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyspark
import pytest
from conftest import FARE

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.predict import Predictor

pytestmark = pytest.mark.spark

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def test_spark_submit_of_the_generated_job_scores_like_in_process(
        java: None, fare_model: Path, trips_parquet: tuple[Path, pd.DataFrame],
        tmp_path: Path) -> None:
    parquet, frame = trips_parquet
    generated, warehouse, cwd = tmp_path / "generated", tmp_path / "warehouse", tmp_path / "cwd"
    write_tree(generated, compile_spec(fare_model).artifacts)
    cwd.mkdir()
    python = sys.executable
    command = [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", "local[2]",
        "--properties-file", str(generated / "spark-submit.conf"),
        "--conf", f"spark.pyspark.python={python}",
        "--conf", f"spark.pyspark.driver.python={python}",
        "--conf", f"spark.sql.warehouse.dir={warehouse.as_uri()}",
        "--conf", "spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName="
                  f"{warehouse / 'metastore_db'};create=true",
        "--driver-java-options", f"-Dderby.system.home={warehouse}",
        str(generated / "batch_job.py"),
        "--query", f"SELECT * FROM parquet.`{parquet}` WHERE trip_id % 7 = 3",
        "--output-table", "submitted.fares"]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYML_MODEL_ROOT": str(FARE)}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    # spark-submit relays its Python driver's stderr to its own stdout.
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "pymlc batch: starting Spark (spark-submit's session)" in output
    assert "pymlc batch: Spark ready on local[2] in" in output
    assert list(cwd.iterdir()) == []

    table = pq.read_table(warehouse / "submitted.db" / "fares").to_pandas()
    table = table.sort_values("trip_id", ignore_index=True)
    rows = frame[frame["trip_id"] % 7 == 3].reset_index(drop=True)
    assert table["trip_id"].tolist() == rows["trip_id"].tolist()
    config = ModelConfig.load(generated / "model.json")
    expected = Predictor(config, FARE).predict_frame(rows.drop(columns="trip_id"))["fare"]
    assert np.array_equal(table["fare"].to_numpy().view(np.int64),
                          expected.to_numpy().view(np.int64))
