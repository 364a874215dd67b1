"""NaN is null (issue 20, item 6): pandas cannot tell NaN from null, so ``nullable: false``
refuses NaN in a float input as it refuses null, INVALID_ARGUMENT naming the column and its
rows, on the typed service and over OIP alike; NaN in a nullable float column is a null (the
model sees NaN); infinities are values. Before, a NaN reached the model (sklearn's error came
back as INTERNAL) while a null in the same column was refused."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from contract_support import (
    Server,
    build,
    dataframe_model,
    dataframe_spec,
    serving,
    write_model,
)
from servers import PYTHON, ROOT
from tritonclient.utils import InferenceServerException

SPEC = dataframe_spec(
    "adv-nan", "Nan", ["{name: x, type: float64}", "{name: z, type: float32, nullable: true}"],
    ["{name: y, type: float64}", "{name: z_is_nan, type: bool}"])
MODEL = dataframe_model("Nan", """
if df["x"].isna().any():
    raise ValueError("NaN reached the model")  # what sklearn does
z = df["z"].to_numpy()
return pd.DataFrame({"y": df["x"] * 2, "z_is_nan": np.isnan(z)})
""")
TYPED = "/pyml.adv_nan.v1.AdvNan/Predict"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Path]]:
    spec = write_model(tmp_path_factory.mktemp("adv-nan"), SPEC, MODEL)
    with serving(build(spec, spec.parent / "generated"), spec,
                 tmp_path_factory.mktemp("nan-sock") / "m.sock") as (server, pb2, _):
        yield server, pb2, spec


def _typed(server: Server, request: Any, pb2: Any) -> Any:
    with grpc.insecure_channel(server.unix) as channel:
        return pb2.PredictResponse.FromString(
            channel.unary_unary(TYPED)(request.SerializeToString(), timeout=30))


def _typed_refused(server: Server, request: Any, pb2: Any) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        _typed(server, request, pb2)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return str(caught.value.details())


def _request(pb2: Any, x: list[float], z: list[float] | None = None) -> Any:
    request = pb2.PredictRequest()
    request.x.values.extend(x)
    request.z.values.extend(z if z is not None else [1.0] * len(x))
    return request


REFUSED = "x: 2 null or NaN value(s), but the column is not nullable (rows 1, 3)"


def test_typed_null_in_a_non_nullable_float_is_refused(served: tuple[Server, Any, Path]) -> None:
    server, pb2, _ = served
    request = _request(pb2, [1.0, 0.0, 2.0, 0.0])
    request.x.nulls.extend([False, True, False, True])
    assert _typed_refused(server, request, pb2) == REFUSED


def test_typed_nan_in_a_non_nullable_float_is_refused(served: tuple[Server, Any, Path]) -> None:
    server, pb2, _ = served
    assert _typed_refused(server, _request(pb2, [1.0, np.nan, 2.0, np.nan]), pb2) == REFUSED


def test_typed_nan_and_null_in_a_nullable_float_are_both_null(
        served: tuple[Server, Any, Path]) -> None:
    server, pb2, _ = served
    request = _request(pb2, [1.0, 2.0, 3.0], [np.nan, 0.0, 5.0])
    request.z.nulls.extend([False, True, False])
    reply = _typed(server, request, pb2)
    assert list(reply.z_is_nan.values) == [True, True, False]
    assert list(reply.y.values) == [2.0, 4.0, 6.0]


def test_typed_infinities_are_values(served: tuple[Server, Any, Path]) -> None:
    server, pb2, _ = served
    reply = _typed(server, _request(pb2, [np.inf, -np.inf], [np.inf, 1.0]), pb2)
    assert list(reply.y.values) == [np.inf, -np.inf]
    assert list(reply.z_is_nan.values) == [False, False]


def _oip(server: Server, x: np.ndarray, z: np.ndarray, *extra: Any) -> Any:
    inputs = []
    for name, values, datatype in (("x", x, "FP64"), ("z", z, "FP32")):
        tensor = triton.InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return triton.InferenceServerClient(url=server.unix).infer("adv-nan", [*inputs, *extra])


def _oip_refused(server: Server, x: np.ndarray, z: np.ndarray, *extra: Any) -> str:
    with pytest.raises(InferenceServerException) as caught:
        _oip(server, x, z, *extra)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    return str(caught.value.message())


def test_oip_nan_and_null_in_a_non_nullable_float_are_refused(
        served: tuple[Server, Any, Path]) -> None:
    server, _, _ = served
    z = np.ones(4, np.float32)
    assert _oip_refused(server, np.array([1.0, np.nan, 2.0, np.nan]), z) == REFUSED
    nulls = triton.InferInput("x.nulls", [4], "BOOL")
    nulls.set_data_from_numpy(np.array([False, True, False, True]))
    assert _oip_refused(server, np.zeros(4), z, nulls) == REFUSED


def test_oip_nan_in_a_nullable_float_is_null_and_inf_a_value(
        served: tuple[Server, Any, Path]) -> None:
    server, _, _ = served
    result = _oip(server, np.array([1.0, np.inf]), np.array([np.nan, np.inf], np.float32))
    assert result.as_numpy("z_is_nan").tolist() == [True, False]
    assert result.as_numpy("y").tolist() == [2.0, np.inf]


def test_pymlc_predict_refuses_a_json_null_naming_the_column(
        served: tuple[Server, Any, Path], tmp_path: Path) -> None:
    server, _, spec = served
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"x": 1.0, "z": 1.0}, {"x": None, "z": None}]))
    done = subprocess.run([PYTHON, "-m", "pymlc", "predict", str(spec), "--input", str(rows),
                           "--socket", server.unix.removeprefix("unix:")], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "x: 1 null or NaN value(s), but the column is not nullable (row 1)" in done.stderr
    assert "Traceback" not in done.stderr
