"""The three ways ``pymlc verify`` runs the examples, each giving a :class:`PathResult`:

* ``in-process``: the runtime's ``Predictor`` in this Python, as ``pymlc validate`` does;
* ``serving``: the serving image in a container hardened as the gateway runs it (no network,
  a read-only root, no capabilities, the spec's CPU, memory and process limits: see
  ``pymlc.image.hardening``), the socket's folder bind-mounted; one ``Predict`` call over the
  Unix socket through the model's generated typed stubs;
* ``batch``: the batch image's own entrypoint (local Spark in the container) scoring
  ``SELECT * FROM parquet.`/data/input.parquet``` into a table whose Parquet files are read
  back from the bind-mounted folder. Spark does not keep the rows' order, so the input carries a
  row number that the job passes through: the image's ``model.json`` is overlaid (read-only)
  with one whose ``batch.passthrough`` also names that column, nothing else changed.

A path never raises for what the model or a container does: errors, time-outs and unsupported
model kinds are recorded in the result so that the report can show them beside the others.
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..image.hardening import model_container_options
from ..image.running import logs_tail, wait_exit
from ..runtime_stub import checks
from ..runtime_stub.config import ModelConfig
from .containers import ContainerRun
from .examples import Examples, outputs_of_frame

__all__ = ["BATCH_QUERY", "BATCH_TABLE", "ROW_COLUMN", "PathResult", "in_process", "through_batch",
           "through_serving"]

BATCH_TABLE = "default.pymlc_verify"
BATCH_DATA = "/data"
BATCH_QUERY = f"SELECT * FROM parquet.`{BATCH_DATA}/input.parquet`"
# Spark keeps no row order; the job copies this column of the query beside the predictions.
ROW_COLUMN = "pymlc_verify_row"
# The batch job's own refusal of a model kind it cannot score (spark_driver.main).
_KIND_REFUSED = "batch scoring from SQL needs model.kind"
_POLL_S = 0.2


@dataclass(frozen=True)
class PathResult:
    """What one path gave.

    Attributes:
        name: ``in-process``, ``serving`` or ``batch``.
        outputs: output name -> values (first axis = example rows); None if the path failed.
        error: why the path failed, with the relevant lines of its log.
        unsupported: why the path cannot run for this model (not a failure, said in the report).
        seconds: wall time of the path, container start and Spark start included.
    """

    name: str
    outputs: dict[str, Any] | None = None
    error: str | None = None
    unsupported: str | None = None
    seconds: float = 0.0


# --- in-process ---------------------------------------------------------------------------

def in_process(config: ModelConfig, model_root: Path, examples: Examples) -> PathResult:
    """Score the examples with ``Predictor`` in this process (the model module imported fresh)."""
    from ..runtime_stub.loader import ModelLoadError
    from ..runtime_stub.predict import Predictor

    started = time.monotonic()
    # The loader gives this model's module its own import (other specs may also say `model`).
    try:
        predictor = Predictor(config, model_root)
        if examples.kind == "dataframe":
            outputs = outputs_of_frame(predictor.predict_columns(examples.inputs))
        else:
            outputs = dict(predictor.predict_tensors(examples.inputs))
    except ModelLoadError as exc:
        return _failed("in-process", f"model: {exc}", started)
    except checks.ContractError as exc:
        return _failed("in-process", "; ".join(exc.problems), started)
    except Exception as exc:  # the user's predict may raise anything
        return _failed("in-process", f"predict raised {type(exc).__name__}: {exc}", started)
    return PathResult("in-process", outputs, seconds=time.monotonic() - started)


def _failed(name: str, error: str, started: float) -> PathResult:
    return PathResult(name, error=error, seconds=time.monotonic() - started)


# --- serving ------------------------------------------------------------------------------

def through_serving(run: ContainerRun, image: str, config: ModelConfig, examples: Examples,
                    folder: Path, *, timeout: float) -> PathResult:
    """Start the serving image, wait until it answers its health check, call ``Predict``.

    Args:
        run: the verify run's containers.
        image: the serving image (id or tag).
        config: the model's config, in the folder of the generated stubs.
        examples: the inputs.
        folder: an empty host folder to mount as the socket's folder.
        timeout: seconds for the server to become ready, and again for the call.
    """
    started = time.monotonic()
    socket = config.serving.socket
    hardening = model_container_options(cpus=config.serving.cpus,
                                        memory_mb=config.serving.memory_mb)
    container = run.start(image, [], role="serving", mounts={folder: posixpath.dirname(socket)},
                          options=hardening, image_user=_image_user(run, image))
    host_socket = folder / posixpath.basename(socket)
    problem = _wait_ready(container, host_socket, timeout)
    if problem:
        return _failed("serving", problem, started)
    try:
        outputs = _predict(config, examples, f"unix:{host_socket}", timeout)
    except _CallError as exc:
        return _failed("serving", f"{exc}{_log_lines(container)}", started)
    return PathResult("serving", outputs, seconds=time.monotonic() - started)


def _image_user(run: ContainerRun, image: str) -> str:
    return str(run.client.api.inspect_image(image)["Config"].get("User") or "")


def _wait_ready(container: Any, socket: Path, timeout: float) -> str | None:
    from ..runtime_stub.health import check

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            code = container.attrs.get("State", {}).get("ExitCode")
            return (f"the serving container exited (code {code}) before it was ready"
                    f"{_log_lines(container)}")
        if socket.exists() and check(f"unix:{socket}", timeout=1.0):
            return None
        time.sleep(_POLL_S)
    return (f"the serving container did not answer its health check on the socket within"
            f" {timeout:.0f} s{_log_lines(container)}")


def _log_lines(container: Any) -> str:
    lines = logs_tail(container)
    return "".join(f"\n  | {line}" for line in lines)


class _CallError(Exception):
    pass


def _predict(config: ModelConfig, examples: Examples, target: str,
             timeout: float) -> dict[str, Any]:
    from ..client import Client, ClientError

    try:
        with Client.for_config(target, config, timeout=timeout) as client:
            result = client.predict(examples.inputs)
    except ClientError as exc:
        raise _CallError(str(exc)) from None
    return outputs_of_frame(result) if config.kind == "dataframe" else dict(result)


# --- batch --------------------------------------------------------------------------------

def through_batch(run: ContainerRun, image: str, config: ModelConfig, examples: Examples,
                  folder: Path, *, config_in_image: str, timeout: float) -> PathResult:
    """Run the batch image's job on the examples, written as Parquet into ``folder``.

    Args:
        run: the verify run's containers.
        image: the batch image (id or tag).
        config: the model's config.
        examples: the inputs.
        folder: an empty host folder, mounted at ``/data``: the input and the warehouse.
        config_in_image: where the image's ``model.json`` is (replaced by one whose
            passthrough column numbers the rows).
        timeout: seconds the job may take, Spark's start included.
    """
    import pyarrow.parquet as pq

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(_input_table(config, examples), folder / "input.parquet")
    command = ["--query", BATCH_QUERY, "--output-table", BATCH_TABLE,
               "--warehouse", f"{BATCH_DATA}/warehouse"]
    overlay = _config_with_row_number(config, folder.parent / "batch-config")
    container = run.start(image, command, role="batch", mounts={folder: BATCH_DATA},
                          files={overlay: config_in_image}, image_user=_image_user(run, image))
    code = wait_exit(container, timeout)
    if code is None:
        return _failed("batch", f"the batch job did not finish within {timeout:.0f} s"
                                f"{_log_lines(container)}", started)
    if code != 0:
        logs = logs_tail(container, 400)
        refused = [line for line in logs if _KIND_REFUSED in line]
        if refused:
            return PathResult("batch", unsupported=f"not supported for {config.kind} models"
                              f" ({refused[0].removeprefix('pymlc batch: error: ')})",
                              seconds=time.monotonic() - started)
        return _failed("batch", f"the batch job exited with code {code}{_job_errors(logs)}",
                       started)
    try:
        outputs = _read_output(config, folder / "warehouse")
    except (OSError, ValueError) as exc:
        return _failed("batch", f"cannot read the output table: {exc}", started)
    return PathResult("batch", outputs, seconds=time.monotonic() - started)


def _job_errors(logs: list[str]) -> str:
    # The job's own summary lines ("pymlc batch: error: ..." and its "  - " details), else the
    # end of the log.
    picked = [line for line in logs
              if line.startswith("pymlc batch: error") or line.startswith("  - ")
              or line.startswith("pymlc batch:") and "left as it was" in line]
    return "".join(f"\n  | {line}" for line in (picked or logs[-30:]))


def _input_table(config: ModelConfig, examples: Examples) -> Any:
    """The examples as an Arrow table with a row number (``ROW_COLUMN``) to sort the output by.

    The spec's passthrough columns that the examples lack are filled with the row number too
    (their type is the query's, so any will do).
    """
    import pandas as pd
    import pyarrow as pa

    if examples.kind == "dataframe":
        table = pa.Table.from_pandas(pd.DataFrame(examples.inputs), preserve_index=False)
        table = _in_spec_types(config, table)
    else:
        table = pa.table({name: _nested(values) for name, values in examples.inputs.items()})
    for name in (*config.batch.passthrough, ROW_COLUMN):
        if name not in table.column_names:
            table = table.append_column(name, pa.array(np.arange(examples.rows,
                                                                 dtype=np.int64)))
    return table


def _in_spec_types(config: ModelConfig, table: Any) -> Any:
    """Each input column in its type table Arrow type, the one the batch job's query check
    expects: pandas holds a date as a midnight ``datetime64`` and a timestamp without a zone,
    which Parquet would store as TIMESTAMP_NTZ for both."""
    from ..runtime_stub.spark_score import arrow_type
    from ..runtime_stub.types import COLUMN_TYPES

    for field in config.inputs:
        index = table.column_names.index(field.name)
        wanted = arrow_type(COLUMN_TYPES[field.type].arrow)
        if table.column(index).type != wanted:
            table = table.set_column(index, field.name, table.column(index).cast(wanted))
    return table


def _nested(values: np.ndarray[Any, Any]) -> Any:
    import pyarrow as pa

    kind = pa.from_numpy_dtype(values.dtype)
    for _ in range(values.ndim - 1):
        kind = pa.list_(kind)
    return pa.array(values.tolist(), type=kind)


def _config_with_row_number(config: ModelConfig, folder: Path) -> Path:
    data = json.loads(config.path.read_text(encoding="utf-8"))
    data["batch"]["passthrough"] = [*(data["batch"].get("passthrough") or ()), ROW_COLUMN]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    path.chmod(0o644)
    return path


def _read_output(config: ModelConfig, warehouse: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    table_dir = warehouse / BATCH_TABLE.split(".")[-1]
    files = sorted(table_dir.glob("part-*.parquet"))
    if not files:
        raise ValueError(f"no Parquet files in {table_dir}")
    frame = pq.read_table(files).to_pandas() if len(files) == 1 else \
        pq.ParquetDataset(files).read().to_pandas()
    frame = frame.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)
    if frame[ROW_COLUMN].tolist() != list(range(len(frame))):
        raise ValueError(f"the table's rows are not the examples' (row numbers"
                         f" {frame[ROW_COLUMN].tolist()[:10]})")
    if config.kind == "dataframe":
        outputs = checks.column_specs(config.outputs)
        columns = {spec.name: frame[spec.name] for spec in outputs}
        return outputs_of_frame(checks.conform_columns(columns, outputs))
    specs = checks.tensor_specs(config.outputs)
    return {spec.name: np.array(frame[spec.name].map(_plain).tolist(), dtype=spec.dtype)
            for spec in specs}


def _plain(value: Any) -> Any:
    # Arrow lists come back as numpy object arrays of arrays; make them nested lists.
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    return value
