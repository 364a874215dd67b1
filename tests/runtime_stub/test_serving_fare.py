"""fare-estimator served by a real server process over a Unix socket and TCP: the typed stubs,
tritonclient as an independent OIP v2 client (strings and a nullable column), health,
reflection, metrics and the bad-request matrix."""

from __future__ import annotations

import json
import socket
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serving_support import SPECS, Server, build, stubs
from tritonclient.utils import InferenceServerException

SPEC = SPECS / "fare-estimator"
INPUTS = json.loads((SPEC / "examples" / "input.json").read_text())
EXPECTED = [row["fare"] for row in json.loads((SPEC / "examples" / "output.json").read_text())]
TYPED_SERVICE = "pyml.fare_estimator.v1.FareEstimator"

pytestmark = pytest.mark.slow  # model servers as child processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(SPEC, tmp_path_factory.mktemp("fare-generated"))


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def server(generated: Path, tmp_path_factory: pytest.TempPathFactory,
           metrics_port: int) -> Iterator[Server]:
    sock = tmp_path_factory.mktemp("fare-sock") / "model.sock"
    running = Server(generated, SPEC, "--socket", str(sock), "--port", "0",
                     "--metrics-port", str(metrics_port))
    yield running
    assert running.stop() == 0, running.text()
    assert not sock.exists(), "the socket file must be removed on exit"


@pytest.fixture(scope="module")
def pb(generated: Path) -> tuple[Any, Any]:
    return stubs(generated, "fare_estimator_v1")


def _typed_request(pb2: Any, rows: list[dict[str, Any]]) -> Any:
    request = pb2.PredictRequest()
    request.trip_distance_km.values.extend(r["trip_distance_km"] for r in rows)
    request.city.values.extend(r["city"] or "" for r in rows)
    request.city.nulls.extend(r["city"] is None for r in rows)
    request.pickup_hour.values.extend(r["pickup_hour"] for r in rows)
    request.passengers.values.extend(r["passengers"] for r in rows)
    return request


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_typed_stub_predicts_the_examples(server: Server, pb: tuple[Any, Any],
                                          transport: str) -> None:
    pb2, pb2_grpc = pb
    target = server.unix if transport == "unix" else server.tcp
    with grpc.insecure_channel(target) as channel:
        reply = pb2_grpc.FareEstimatorStub(channel).Predict(_typed_request(pb2, INPUTS),
                                                            timeout=10)
    np.testing.assert_allclose(list(reply.fare.values), EXPECTED, rtol=1e-9)


def test_socket_is_owner_and_group_only(server: Server) -> None:
    mode = Path(server.unix.removeprefix("unix:")).stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660


def _triton_inputs(rows: list[dict[str, Any]]) -> list[Any]:
    n = len(rows)
    columns = {
        "trip_distance_km": ("FP64", np.array([r["trip_distance_km"] for r in rows])),
        "city": ("BYTES", np.array([(r["city"] or "").encode() for r in rows], dtype=object)),
        "city.nulls": ("BOOL", np.array([r["city"] is None for r in rows])),
        "pickup_hour": ("INT32", np.array([r["pickup_hour"] for r in rows], dtype=np.int32)),
        "passengers": ("INT8", np.array([r["passengers"] for r in rows], dtype=np.int8)),
    }
    inputs = []
    for name, (datatype, values) in columns.items():
        tensor = triton.InferInput(name, [n], datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_tritonclient_infers_strings_and_nulls(server: Server, transport: str) -> None:
    url = server.unix if transport == "unix" else server.tcp
    client = triton.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fare-estimator")
    result = client.infer("fare-estimator", _triton_inputs(INPUTS), request_id="r-1")
    np.testing.assert_allclose(result.as_numpy("fare"), EXPECTED, rtol=1e-9)
    assert result.get_response().id == "r-1"
    assert result.get_response().model_version == "1.4.0"


def test_tritonclient_sees_the_model_metadata(server: Server) -> None:
    client = triton.InferenceServerClient(url=server.unix)
    meta = client.get_model_metadata("fare-estimator")
    inputs = {t.name: (t.datatype, list(t.shape)) for t in meta.inputs}
    assert inputs == {"trip_distance_km": ("FP64", [-1]), "city": ("BYTES", [-1]),
                      "city.nulls": ("BOOL", [-1]), "pickup_hour": ("INT32", [-1]),
                      "passengers": ("INT8", [-1])}
    assert [(t.name, t.datatype) for t in meta.outputs] == [("fare", "FP64")]
    assert meta.versions == ["1.4.0"]
    assert client.get_server_metadata().name == "pymlc"


def test_unknown_model_is_not_found(server: Server) -> None:
    client = triton.InferenceServerClient(url=server.unix)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("no-such-model", _triton_inputs(INPUTS))
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    assert "fare-estimator" in caught.value.message()


def test_oip_and_typed_paths_agree_on_a_null_city(server: Server, pb: tuple[Any, Any]) -> None:
    rows = [dict(INPUTS[0], city=None), dict(INPUTS[0], city="lisbon")]
    pb2, pb2_grpc = pb
    with grpc.insecure_channel(server.unix) as channel:
        reply = pb2_grpc.FareEstimatorStub(channel).Predict(_typed_request(pb2, rows))
    typed = list(reply.fare.values)
    oip = triton.InferenceServerClient(url=server.unix).infer(
        "fare-estimator", _triton_inputs(rows)).as_numpy("fare")
    assert typed == oip.tolist()
    assert typed[0] != typed[1]


def test_health_reports_serving(server: Server) -> None:
    with grpc.insecure_channel(server.unix) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", TYPED_SERVICE, "inference.GRPCInferenceService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_every_service(server: Server) -> None:
    with grpc.insecure_channel(server.tcp) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    names = {s.name for s in reply.list_services_response.service}
    assert names == {TYPED_SERVICE, "inference.GRPCInferenceService", "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection"}


# --- bad requests -------------------------------------------------------------------------

def _typed_error(server: Server, pb: tuple[Any, Any], request: Any | bytes) -> grpc.RpcError:
    pb2, _ = pb
    with grpc.insecure_channel(server.unix) as channel:
        call = channel.unary_unary(f"/{TYPED_SERVICE}/Predict")
        data = request if isinstance(request, bytes) else request.SerializeToString()
        with pytest.raises(grpc.RpcError) as caught:
            call(data, timeout=10)
    return caught.value


def test_typed_missing_column_names_it(server: Server, pb: tuple[Any, Any]) -> None:
    request = _typed_request(pb[0], INPUTS)
    request.ClearField("pickup_hour")
    error = _typed_error(server, pb, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pickup_hour: missing input column" in error.details()


def test_typed_left_out_nullable_column_is_null(server: Server, pb: tuple[Any, Any]) -> None:
    # What a client built before `city` existed sends: the model sees a null in every row.
    pb2, pb2_grpc = pb
    request = _typed_request(pb2, INPUTS)
    request.ClearField("city")
    nulls = _typed_request(pb2, [dict(row, city=None) for row in INPUTS])
    with grpc.insecure_channel(server.unix) as channel:
        stub = pb2_grpc.FareEstimatorStub(channel)
        left_out = list(stub.Predict(request, timeout=10).fare.values)
        assert left_out == list(stub.Predict(nulls, timeout=10).fare.values)


def test_typed_value_out_of_range_names_the_column(server: Server, pb: tuple[Any, Any]) -> None:
    request = _typed_request(pb[0], INPUTS)
    request.passengers.values[0] = 300  # int8 travels as int32; 300 does not fit
    error = _typed_error(server, pb, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "passengers: values" in error.details() and "int8" in error.details()


def test_typed_columns_of_different_lengths(server: Server, pb: tuple[Any, Any]) -> None:
    request = _typed_request(pb[0], INPUTS)
    request.trip_distance_km.values.append(1.0)
    error = _typed_error(server, pb, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "different lengths" in error.details() and "trip_distance_km=9" in error.details()


def test_typed_unknown_field_is_refused(server: Server, pb: tuple[Any, Any]) -> None:
    extra = bytes([15 << 3 | 0, 1])  # field 15, varint 1: a field this spec does not have
    error = _typed_error(server, pb, _typed_request(pb[0], INPUTS).SerializeToString() + extra)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "field number 15" in error.details()


def test_typed_garbage_is_invalid_argument(server: Server, pb: tuple[Any, Any]) -> None:
    error = _typed_error(server, pb, b"\xff\xff\xff")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def _triton_error(server: Server, inputs: list[Any]) -> InferenceServerException:
    client = triton.InferenceServerClient(url=server.tcp)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("fare-estimator", inputs)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    return caught.value


def test_oip_missing_input_names_it(server: Server) -> None:
    inputs = [t for t in _triton_inputs(INPUTS) if t.name() != "passengers"]
    assert "passengers: missing input column" in _triton_error(server, inputs).message()


def test_oip_extra_input_names_it(server: Server) -> None:
    extra = triton.InferInput("tip", [len(INPUTS)], "FP64")
    extra.set_data_from_numpy(np.zeros(len(INPUTS)))
    message = _triton_error(server, [*_triton_inputs(INPUTS), extra]).message()
    assert "tip: unexpected input column" in message


def test_oip_unsafe_type_names_it(server: Server) -> None:
    inputs = _triton_inputs(INPUTS)
    hour = triton.InferInput("pickup_hour", [len(INPUTS)], "FP64")
    hour.set_data_from_numpy(np.full(len(INPUTS), 3.5))
    inputs = [hour if t.name() == "pickup_hour" else t for t in inputs]
    message = _triton_error(server, inputs).message()
    assert "pickup_hour: expected int32, got float64" in message


def test_oip_misshaped_column_names_it(server: Server) -> None:
    inputs = _triton_inputs(INPUTS)
    hours = triton.InferInput("pickup_hour", [2, 4], "INT32")
    hours.set_data_from_numpy(np.arange(8, dtype=np.int32).reshape(2, 4))
    inputs = [hours if t.name() == "pickup_hour" else t for t in inputs]
    assert "pickup_hour: shape [2, 4]" in _triton_error(server, inputs).message()


def test_oip_shape_that_does_not_match_the_bytes(server: Server) -> None:
    inputs = _triton_inputs(INPUTS)
    distance = triton.InferInput("trip_distance_km", [len(INPUTS)], "FP64")
    distance.set_data_from_numpy(np.zeros(len(INPUTS)))
    distance.set_shape([len(INPUTS) + 1])
    inputs = [distance if t.name() == "trip_distance_km" else t for t in inputs]
    assert "trip_distance_km: 64 bytes do not hold shape [9]" in \
        _triton_error(server, inputs).message()


def test_oip_null_in_a_non_nullable_column(server: Server) -> None:
    nulls = triton.InferInput("pickup_hour.nulls", [len(INPUTS)], "BOOL")
    nulls.set_data_from_numpy(np.ones(len(INPUTS), dtype=bool))
    message = _triton_error(server, [*_triton_inputs(INPUTS), nulls]).message()
    assert f"pickup_hour: {len(INPUTS)} null value(s), but the column is not nullable (rows" \
        " 0, 1, 2, 3, 4 and" in message


def test_server_keeps_serving_after_bad_requests(server: Server, pb: tuple[Any, Any]) -> None:
    test_typed_garbage_is_invalid_argument(server, pb)
    test_typed_stub_predicts_the_examples(server, pb, "unix")


def test_metrics_count_requests_and_errors(server: Server, pb: tuple[Any, Any],
                                           metrics_port: int) -> None:
    test_typed_garbage_is_invalid_argument(server, pb)
    test_typed_stub_predicts_the_examples(server, pb, "tcp")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    counts = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    ok = 'pymlc_requests_total{model="fare-estimator",method="Predict",code="OK"}'
    bad = 'pymlc_requests_total{model="fare-estimator",method="Predict",code="INVALID_ARGUMENT"}'
    assert counts[ok] >= 1 and counts[bad] >= 1
    count = 'pymlc_request_duration_seconds_count{model="fare-estimator",method="Predict"}'
    inf = 'pymlc_request_duration_seconds_bucket{model="fare-estimator",method="Predict",le="+Inf"}'
    assert counts[count] == counts[inf] >= counts[ok] + counts[bad]
