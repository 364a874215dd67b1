"""Compatible means compatible (issue 20, item 5): every change ``pymlc diff`` calls compatible
is served to old clients. An OLD spec is built and its stubs kept; the NEW spec makes every
compatible change at once (its lock carried over, so numbers stay) and a real server of it is
called with the OLD generated stubs and with tritonclient sending what an old OIP client sends.

Before, "nullable input added" was called compatible ("old callers send nulls") while the
server refused every old request: ``INVALID_ARGUMENT zone: missing input column``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from contract_support import Server, build, dataframe_model, serving, write_model
from google.protobuf import unknown_fields
from servers import PYTHON, ROOT
from tritonclient.utils import InferenceServerException

OLD = """pyml: 1
name: adv-compat
version: 1.0.0
description: Fares, the first version
model: {kind: dataframe, entrypoint: model:Fare}
inputs:
  - {name: distance, type: float32}
  - {name: hour, type: int32}
  - {name: passengers, type: int8}
  - {name: city, type: string, nullable: true}
outputs:
  - {name: fare, type: float64, nullable: true}
"""
# Every change `pymlc diff` calls compatible, at once.
NEW = """pyml: 1
name: adv-compat
version: 1.3.0
description: Fares, with zones and days
model: {kind: dataframe, entrypoint: model:Fare}
inputs:
  - {name: hour, type: int64, nullable: true, description: Hour of pickup}
  - {name: distance, type: float64}
  - {name: zone, type: string, nullable: true}
  - {name: passengers, type: int16}
  - {name: day, type: date, nullable: true}
  - {name: city, type: string, nullable: true}
  - {name: surge, type: float32, nullable: true}
  - {name: vip, type: bool, nullable: true}
outputs:
  - {name: fare, type: float64, description: Never null now}
  - {name: tip, type: float64}
serving: {timeout_ms: 5000}
batch: {passthrough: [trip_id]}
"""
MODEL = dataframe_model("Fare", """
fare = 2 * df["distance"] + df["hour"].astype("float64") + df["passengers"] \\
    + df["city"].notna()
# What the model sees of each input the old clients do not know: nulls only.
unseen = [df["zone"].isna(), df["day"].isna(), df["surge"].isna(), df["vip"].isna()]
return pd.DataFrame({"fare": fare, "tip": -1.0 * sum(unseen)})
""")
ROWS = [{"distance": 0.5, "hour": 7, "passengers": 2, "city": "porto"},
        {"distance": 1.25, "hour": 23, "passengers": -1, "city": None},
        {"distance": 10.0, "hour": 0, "passengers": 127, "city": "faro"}]
FARE = [2 * r["distance"] + r["hour"] + r["passengers"] + (r["city"] is not None) for r in ROWS]
TIP = [-4.0] * len(ROWS)  # four new nullable inputs, all null


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    old = write_model(tmp_path_factory.mktemp("compat-old"), OLD, MODEL)
    build(old, old.parent / "generated")
    new = write_model(tmp_path_factory.mktemp("compat-new"), NEW, MODEL)
    shutil.copyfile(old.parent / "pyml.lock", new.parent / "pyml.lock")  # as in the repository
    return old, new


@pytest.fixture(scope="module")
def served(specs: tuple[Path, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any]]:
    old, new = specs
    # The NEW spec served; the OLD stubs imported, as old clients have them.
    with serving(build(new, new.parent / "generated"), new,
                 tmp_path_factory.mktemp("compat-sock") / "m.sock",
                 stubs=old.parent / "generated") as running:
        yield running


def test_pymlc_diff_calls_every_change_compatible(specs: tuple[Path, Path]) -> None:
    old, new = specs
    done = subprocess.run([PYTHON, "-m", "pymlc", "diff", str(old), str(new), "--format",
                           "json"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [model] = json.loads(done.stdout)["models"]
    changes = model["changes"]
    kinds = {(c["path"], c["kind"]) for c in changes}
    assert not [c for c in changes if c["breaking"]]
    assert {("inputs.distance.type", "type-widened"), ("inputs.hour.type", "type-widened"),
            ("inputs.passengers.type", "type-widened"), ("inputs.hour.nullable", "made-nullable"),
            ("inputs.zone", "input-added"), ("inputs.day", "input-added"),
            ("inputs.surge", "input-added"), ("inputs.vip", "input-added"),
            ("outputs.fare.nullable", "made-required"), ("outputs.tip", "output-added"),
            ("inputs", "order-changed"), ("version", "version-changed"),
            ("batch.passthrough.trip_id", "passthrough-added")} <= kinds


def _old_typed_request(pb2: Any) -> Any:
    request = pb2.PredictRequest()
    request.distance.values.extend(r["distance"] for r in ROWS)
    request.hour.values.extend(r["hour"] for r in ROWS)
    request.passengers.values.extend(r["passengers"] for r in ROWS)
    request.city.values.extend(r["city"] or "" for r in ROWS)
    request.city.nulls.extend(r["city"] is None for r in ROWS)
    return request


def test_old_generated_stubs_are_answered(served: tuple[Server, Any, Any]) -> None:
    server, pb2, pb2_grpc = served
    assert not hasattr(pb2.PredictRequest(), "zone")  # truly the old stubs
    with grpc.insecure_channel(server.unix) as channel:
        reply = pb2_grpc.AdvCompatStub(channel).Predict(_old_typed_request(pb2), timeout=30)
    assert list(reply.fare.values) == FARE and list(reply.fare.nulls) == []
    # The new output travels as a field the old stubs do not know: parsed, and kept aside.
    assert len(unknown_fields.UnknownFieldSet(reply)) == 1


def _old_oip_inputs() -> list[Any]:
    columns = {
        "distance": ("FP32", np.array([r["distance"] for r in ROWS], np.float32)),
        "hour": ("INT32", np.array([r["hour"] for r in ROWS], np.int32)),
        "passengers": ("INT8", np.array([r["passengers"] for r in ROWS], np.int8)),
        "city": ("BYTES", np.array([(r["city"] or "").encode() for r in ROWS], object)),
        "city.nulls": ("BOOL", np.array([r["city"] is None for r in ROWS])),
    }
    inputs = []
    for name, (datatype, values) in columns.items():
        tensor = triton.InferInput(name, [len(ROWS)], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def test_an_old_oip_client_is_answered(served: tuple[Server, Any, Any]) -> None:
    server, _, _ = served
    client = triton.InferenceServerClient(url=server.unix)
    result = client.infer("adv-compat", _old_oip_inputs())
    assert result.as_numpy("fare").tolist() == FARE
    assert result.as_numpy("tip").tolist() == TIP  # the model saw nulls in every new input
    # An old client asks for what it was promised: fare and its null flags (fare was nullable).
    asked = [triton.InferRequestedOutput("fare"), triton.InferRequestedOutput("fare.nulls")]
    result = client.infer("adv-compat", _old_oip_inputs(), outputs=asked)
    assert result.as_numpy("fare").tolist() == FARE
    assert result.as_numpy("fare.nulls").tolist() == [False] * len(ROWS)
    assert result.as_numpy("tip") is None


def test_flags_without_their_column_are_refused(served: tuple[Server, Any, Any]) -> None:
    server, _, _ = served
    flags = triton.InferInput("zone.nulls", [len(ROWS)], "BOOL")
    flags.set_data_from_numpy(np.zeros(len(ROWS), bool))
    with pytest.raises(InferenceServerException) as caught:
        triton.InferenceServerClient(url=server.unix).infer("adv-compat",
                                                            [*_old_oip_inputs(), flags])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "zone.nulls: sent without zone" in caught.value.message()


def test_a_required_input_left_out_is_still_refused(served: tuple[Server, Any, Any]) -> None:
    server, pb2, pb2_grpc = served
    request = _old_typed_request(pb2)
    request.ClearField("distance")
    with grpc.insecure_channel(server.unix) as channel, pytest.raises(grpc.RpcError) as caught:
        pb2_grpc.AdvCompatStub(channel).Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "distance: missing input column (float64)"


def test_a_request_of_nullable_inputs_only_is_refused_clearly(
        served: tuple[Server, Any, Any]) -> None:
    server, pb2, pb2_grpc = served
    request = pb2.PredictRequest()
    request.city.values.extend(["porto"])
    request.ClearField("city")  # nothing at all: no input gives the row count
    with grpc.insecure_channel(server.unix) as channel, pytest.raises(grpc.RpcError) as caught:
        pb2_grpc.AdvCompatStub(channel).Predict(request, timeout=30)
    details = caught.value.details()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "zone: missing input column (string, nullable); a nullable input may be left out" \
           " (it is then null in every row) only beside an input that gives the row count" \
           in details
    assert "distance: missing input column (float64)" in details
