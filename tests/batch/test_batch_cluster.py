"""``pymlc batch --master spark://...`` on a standalone cluster the test starts (a Master and one
Worker from pyspark's own ``bin/spark-class``, on 127.0.0.1): the job's executors run in the
worker's JVM, a query with a filter scores exactly as in-process, ``--warehouse`` holds the
tables and the metastore (nothing lands in the working folder), and a job failing half-way while
overwriting the Parquet table leaves its files byte-identical."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pyspark
import pytest
from conftest import FARE, make_failing_spec

from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.predict import Predictor

pytestmark = pytest.mark.spark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
ENV = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _daemon(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], env=ENV,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"{log.name}: no {text!r}:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def cluster(java: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A standalone master and one worker (2 cores); the master URL and the worker's work dir."""
    folder = tmp_path_factory.mktemp("cluster")
    port = _free_port()
    master = _daemon(folder / "master.log", "org.apache.spark.deploy.master.Master", "--host",
                     "127.0.0.1", "--port", str(port), "--webui-port", str(_free_port()))
    daemons = [master]
    try:
        _wait_for(folder / "master.log", "I have been elected leader", master)
        url = f"spark://127.0.0.1:{port}"
        work = folder / "work"
        worker = _daemon(folder / "worker.log", "org.apache.spark.deploy.worker.Worker",
                         "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
                         "--webui-port", str(_free_port()), "--work-dir", str(work), url)
        daemons.append(worker)
        _wait_for(folder / "worker.log", "Successfully registered with master", worker)
        yield url, work
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def _batch(spec: Path, query: str, warehouse: Path, master: str, cwd: Path
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymlc", "batch", str(spec), "--query", query,
                           "--output-table", "cluster.fares", "--warehouse", str(warehouse),
                           "--master", master], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=900, check=False)


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_standalone_cluster_scores_like_in_process_and_fails_atomically(
        cluster: tuple[str, Path], fare_model: Path, fare_config: Path, tmp_path: Path,
        trips_parquet: tuple[Path, pd.DataFrame]) -> None:
    url, work_dir = cluster
    parquet, frame = trips_parquet
    warehouse, cwd = tmp_path / "warehouse", tmp_path / "cwd"
    cwd.mkdir()
    query = f"SELECT * FROM parquet.`{parquet}` WHERE pickup_hour BETWEEN 7 AND 9"
    done = _batch(fare_model, query, warehouse, url, cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Spark ready on {url} in" in done.stderr  # the start-up line names the master
    assert list(work_dir.glob("app-*")), "no executor ran in the worker"
    assert list(cwd.iterdir()) == []  # nothing lands in the working folder

    folder = warehouse / "cluster.db" / "fares"
    table = pq.read_table(folder).to_pandas().sort_values("trip_id", ignore_index=True)
    rows = frame[frame["pickup_hour"].between(7, 9)].reset_index(drop=True)
    assert table["trip_id"].tolist() == rows["trip_id"].tolist() and len(rows) > 10_000
    expected = Predictor(ModelConfig.load(fare_config), FARE).predict_frame(
        rows.drop(columns="trip_id"))["fare"].to_numpy()
    assert np.array_equal(table["fare"].to_numpy().view(np.int64), expected.view(np.int64))

    before = _files(warehouse / "cluster.db")
    failing = make_failing_spec(tmp_path / "failing", fare_model, fail_after=2_000)
    failed = _batch(failing.parents[1] / "pyml.yaml", query, warehouse, url, cwd)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "RuntimeError: deliberate failure after 2100 rows" in failed.stderr
    assert "cluster.fares was left as it was" in failed.stderr
    assert _files(warehouse / "cluster.db") == before
    assert list(cwd.iterdir()) == []
