"""Wide specs (issue 20, item 10): a 10,000-column feature table validates, builds, and a real
server answers a typed Predict and an OIP ModelInfer of 10,000 columns.

It used to be refused as "an alias bomb?" past ~2,850 columns; past it, protobuf's Python runtime
(upb) cannot load a message of more than ~8,000 message fields, so a wide message travels in
blocks of 5,000 (``runtime_stub.wire``). Timings are printed (``pytest -s``), never asserted
tightly: the machine is shared.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from contract_support import Server, build, dataframe_model, serving, write_model
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from servers import PYTHON, ROOT

from pymlc.compiler.lock import parse_lock
from pymlc.runtime_stub.wire import BLOCK_FIELDS, block_numbers, block_of

FLOATS, INTS, TEXTS = 9000, 500, 500
COLUMNS = [f"f{i:04d}" for i in range(FLOATS)] + [f"i{i:03d}" for i in range(INTS)] + \
    [f"s{i:03d}" for i in range(TEXTS)]
ROWS = 3
SPEC = "\n".join([
    "pyml: 1", "name: adv-wide", "version: 1.0.0", "model:", "  kind: dataframe",
    "  entrypoint: model:Wide", "inputs:",
    *(f"  - {{name: f{i:04d}, type: float64, nullable: true}}" for i in range(FLOATS)),
    *(f"  - {{name: i{i:03d}, type: int32}}" for i in range(INTS)),
    *(f"  - {{name: s{i:03d}, type: string, nullable: true}}" for i in range(TEXTS)),
    "outputs:", "  - {name: total, type: float64}", "  - {name: texts, type: int64}",
    "serving: {timeout_ms: 60000}", ""])  # the shared machine may be busy
MODEL = dataframe_model("Wide", """
numbers = df.filter(regex="^[fi]").astype("float64").sum(axis=1)
texts = df.filter(regex="^s").notna().sum(axis=1)
return pd.DataFrame({"total": numbers, "texts": texts.astype("int64")})
""")


def _timed(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run([PYTHON, "-m", "pymlc", *args], cwd=cwd, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Server, Any]]:
    spec = write_model(tmp_path_factory.mktemp("adv-wide"), SPEC, MODEL)
    validate = _timed("validate", str(spec), cwd=ROOT)
    start = time.perf_counter()
    generated = build(spec, spec.parent / "generated")
    print(f"\n10,000 columns: validate {validate:.1f}s, build {time.perf_counter() - start:.1f}s")
    with serving(generated, spec,
                 tmp_path_factory.mktemp("wide-sock") / "m.sock") as (server, pb2, _):
        yield spec, generated, server, pb2


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    data: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        if name.startswith("f"):
            data[name] = rng.random(ROWS)
        elif name.startswith("i"):
            data[name] = rng.integers(-100, 100, ROWS).astype(np.int32)
        else:
            data[name] = np.array([f"t{j}" if j else None for j in range(ROWS)], dtype=object)
    data["f0000"][1] = np.nan  # a null
    return data


def _expected(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    total = np.nansum([data[n].astype(float) for n in COLUMNS if n[0] in "fi"], axis=0)
    texts = np.sum([[v is not None for v in data[n]] for n in COLUMNS if n[0] == "s"], axis=0)
    return total, texts


def test_the_lock_fills_block_0_then_block_1(wide: tuple[Path, Path, Server, Any]) -> None:
    spec, generated, _, _ = wide
    lock = parse_lock((spec.parent / "pyml.lock").read_text(), "pyml.lock")
    blocks = [block_of(number) for _, number in lock.inputs.fields]
    assert blocks.count(0) == BLOCK_FIELDS and blocks.count(1) == len(COLUMNS) - BLOCK_FIELDS
    numbers = dict(lock.inputs.fields)
    assert numbers["f0000"] == 1 and numbers[COLUMNS[BLOCK_FIELDS]] == block_numbers(1).start
    # protoc compiles the proto; each message holds at most BLOCK_FIELDS fields.
    proto_dir = generated / "proto"
    out = proto_dir.parent / "wide.pb"
    assert protoc.main(["protoc", f"-I{proto_dir}", f"--descriptor_set_out={out}",
                        "adv_wide_v1.proto"]) == 0
    messages = {m.name: m for m in descriptor_pb2.FileDescriptorSet.FromString(
        out.read_bytes()).file[0].message_type}
    assert len(messages["PredictRequest"].field) == BLOCK_FIELDS + 1  # + block_1
    assert len(messages["PredictRequestBlock1"].field) == len(COLUMNS) - BLOCK_FIELDS


def test_a_typed_predict_of_10000_columns(wide: tuple[Path, Path, Server, Any]) -> None:
    _, _, server, pb2 = wide
    data = _data()
    request = pb2.PredictRequest()
    for i, name in enumerate(COLUMNS):
        column = getattr(request.block_1 if i >= BLOCK_FIELDS else request, name)
        values = data[name]
        if name.startswith("s"):
            column.values.extend(v or "" for v in values)
            column.nulls.extend(v is None for v in values)
        else:
            column.values.extend(np.nan_to_num(values).tolist())
            if name == "f0000":
                column.nulls.extend(np.isnan(values).tolist())
    with grpc.insecure_channel(server.unix, options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary("/pyml.adv_wide.v1.AdvWide/Predict")
        payload = request.SerializeToString()
        latencies = []
        for _ in range(3):
            start = time.perf_counter()
            reply = pb2.PredictResponse.FromString(call(payload, timeout=120))
            latencies.append(time.perf_counter() - start)
    print(f"\ntyped Predict, 10,000 columns x {ROWS} rows ({len(payload)} bytes):"
          f" {min(latencies) * 1000:.0f} ms (best of 3)")
    total, texts = _expected(data)
    np.testing.assert_allclose(list(reply.total.values), total)
    assert list(reply.texts.values) == texts.tolist()


def test_an_oip_infer_of_10000_columns(wide: tuple[Path, Path, Server, Any]) -> None:
    _, _, server, _ = wide
    data = _data()
    inputs = []
    for name in COLUMNS:
        values = data[name]
        if name.startswith("s"):
            tensor = triton.InferInput(name, [ROWS], "BYTES")
            tensor.set_data_from_numpy(np.array([(v or "").encode() for v in values],
                                                dtype=object))
            nulls = triton.InferInput(name + ".nulls", [ROWS], "BOOL")
            nulls.set_data_from_numpy(np.array([v is None for v in values]))
            inputs += [tensor, nulls]
            continue
        tensor = triton.InferInput(name, [ROWS], "FP64" if name[0] == "f" else "INT32")
        tensor.set_data_from_numpy(values)  # NaN in a nullable float column is a null
        inputs.append(tensor)
    client = triton.InferenceServerClient(url=server.unix)
    latencies = []
    for _ in range(3):
        start = time.perf_counter()
        result = client.infer("adv-wide", inputs, client_timeout=120)
        latencies.append(time.perf_counter() - start)
    print(f"\nOIP ModelInfer, 10,000 columns x {ROWS} rows: {min(latencies) * 1000:.0f} ms"
          " (best of 3)")
    total, texts = _expected(data)
    np.testing.assert_allclose(result.as_numpy("total"), total)
    assert result.as_numpy("texts").tolist() == texts.tolist()


def test_a_tensor_model_of_more_than_one_message_of_tensors_is_refused(tmp_path: Path) -> None:
    count = BLOCK_FIELDS + 1
    spec = write_model(tmp_path, "\n".join([
        "pyml: 1", "name: many-tensors", "version: 1.0.0", "model:", "  kind: tensor",
        "  entrypoint: model:M", "inputs:",
        *(f"  - {{name: t{i}, dtype: float32, shape: [-1]}}" for i in range(count)),
        "outputs:", "  - {name: y, dtype: float32, shape: [-1]}", ""]), "")
    result = subprocess.run([PYTHON, "-m", "pymlc", "validate", str(spec)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"error[E210]: inputs: a tensor model has at most {BLOCK_FIELDS} inputs, got" \
           f" {count}" in result.stderr
