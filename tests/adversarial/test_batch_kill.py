"""SIGTERM and SIGKILL of ``pymlc batch`` while it scores and when it is about to swap, in
overwrite and append mode: the job never swaps, the table's files stay byte-identical, nothing is
left in the warehouse (no staging table or folder, no ``_temporary``), and no JVM or Python
worker outlives the job.

One warehouse for all four kills, after one job that writes the table; a last Spark process
lists the metastore's tables. Each kill is a real ``pymlc batch`` (its own JVM, 15-30 s here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from batch_runs import Batch, descendants, numbers, slow_spec, table_bytes, wait_gone

pytestmark = pytest.mark.spark

TABLE = "kills.scores"
# (signal, moment, mode); "swap": the job waits at the tests' pause point before its swap.
CASES = [(signal.SIGTERM, "scoring", "overwrite"), (signal.SIGKILL, "scoring", "append"),
         (signal.SIGTERM, "swap", "append"), (signal.SIGKILL, "swap", "overwrite")]
_LIST_TABLES = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pymlc.runtime_stub.spark_session import start_session
    warehouse = Path(sys.argv[1])
    spark, _ = start_session(app="list", master="local[1]", warehouse=warehouse,
                             rows_per_batch=100, log=warehouse / "logs" / "list.log")
    print(" ".join(sorted(r["tableName"] for r in spark.sql("SHOW TABLES IN kills").collect())))
    spark.stop()
""")


def _kill(spec: Path, data: Path, warehouse: Path, work: Path, case: tuple[int, str, str]
          ) -> None:
    signum, moment, mode = case
    rows, env = (20_000, {"SLOW_SECONDS": "0.1"}) if moment == "scoring" else \
        (500, {"PYMLC_BATCH_TEST_PAUSE_BEFORE_SWAP": "600"})
    job = Batch([str(spec), "--query", f"SELECT * FROM parquet.`{data}` WHERE id < {rows}",
                 "--output-table", TABLE, "--mode", mode, "--warehouse", str(warehouse)],
                cwd=work, env=env)
    try:
        if moment == "scoring":
            job.wait_for(r"scoring into staging table kills\.scores__pyml_")
            job.wait_for(r"stage \d+: \d+/\d+ tasks \([1-9]\d* running\)")  # the model runs
        else:
            job.wait_for(r"pausing 600 s before the swap")
        tree = descendants(job.process.pid)
        assert len(tree) >= 3, tree  # the job, its JVM, Python workers
        job.process.send_signal(signum)
        left = wait_gone(tree | {job.process.pid})
        err = job.finish()
    finally:
        if job.process.poll() is None:
            job.process.kill()
    assert not left, f"processes outlived the job: {left}"
    assert job.process.returncode == (143 if signum == signal.SIGTERM else -signal.SIGKILL), err
    assert f"stopped by SIGTERM before the swap: {TABLE} was left as it was" in err, err
    assert "done:" not in err and "Traceback" not in err and "at org.apache" not in err, err


def test_a_killed_or_stopped_job_never_swaps_and_leaves_nothing(tmp_path: Path) -> None:
    spec = slow_spec(tmp_path / "slow")
    data = numbers(tmp_path / "numbers.parquet", 20_000)
    warehouse, work = tmp_path / "warehouse", tmp_path / "work"
    work.mkdir()
    first = Batch([str(spec), "--query", f"SELECT * FROM parquet.`{data}` WHERE id < 1000",
                   "--output-table", TABLE, "--warehouse", str(warehouse)], cwd=work)
    assert first.finish() and first.process.returncode == 0, "\n".join(first.lines)
    before = table_bytes(warehouse)
    assert any(name.endswith(".parquet") for name in before), before

    for case in CASES:
        _kill(spec, data, warehouse, work, case)
        assert table_bytes(warehouse) == before, case

    assert list(work.iterdir()) == []
    listed = subprocess.run([sys.executable, "-c", _LIST_TABLES, str(warehouse)],
                            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
                            capture_output=True, text=True, timeout=600, check=False)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.split() == ["scores"]
