"""Two ``pymlc batch`` jobs on one table (one warehouse, whose embedded Derby metastore admits
one process): the second gets one clear error at once, naming the job that holds it, instead
of Derby's traces after a 30 s wait; the first finishes undisturbed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from batch_runs import Batch, numbers, slow_spec, table_bytes

pytestmark = pytest.mark.spark


def test_a_second_job_on_the_same_table_gets_one_clear_error(tmp_path: Path) -> None:
    spec = slow_spec(tmp_path / "slow")
    data = numbers(tmp_path / "numbers.parquet", 2_000)
    warehouse = tmp_path / "warehouse"
    args = [str(spec), "--query", f"SELECT * FROM parquet.`{data}`", "--output-table",
            "twice.scores", "--warehouse", str(warehouse)]
    first = Batch(args, cwd=tmp_path, env={"PYMLC_BATCH_TEST_PAUSE_BEFORE_SWAP": "600"})
    try:
        first.wait_for(r"pausing 600 s before the swap")
        second = Batch(args, cwd=tmp_path)
        err = second.finish(timeout=60)  # no Spark starts: no 15-30 s JVM, no Derby wait
        assert second.process.returncode == 1, err
        assert err.splitlines() == [
            f"pymlc batch: error: the warehouse {warehouse} is in use by pymlc batch job"
            f" {_job_pid(first)} writing twice.scores since"
            f" {err.partition(' since ')[2][:8]}; its embedded metastore (Derby) admits one"
            " process at a time: wait for that job to finish, or give this one its own"
            " --warehouse"], err
    finally:
        first.process.send_signal(signal.SIGTERM)
        first.finish()
    assert first.process.returncode == 143, "\n".join(first.lines)
    assert table_bytes(warehouse) == {}  # its database, created for the job, dropped again


def _job_pid(batch: Batch) -> int:
    """The job's own pid (a child of pymlc batch), from its log file's name."""
    line = next(line for line in batch.lines if "; log: " in line)
    return int(line.rpartition("-")[2].removesuffix(".log"))
