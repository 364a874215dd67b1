"""digit-net (a tensor model) served by a real server process: typed stubs with raw tensor
bytes, tritonclient, misshaped and mistyped tensors, too-large messages, and 8 concurrent
clients x 1000 requests without an error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from serving_support import SPECS, Server, build, stubs
from tritonclient.utils import InferenceServerException

SPEC = SPECS / "digit-net"
PIXELS = np.array(json.loads((SPEC / "examples" / "input.json").read_text())["pixels"],
                  dtype=np.float32)
EXPECTED = json.loads((SPEC / "examples" / "output.json").read_text())

pytestmark = pytest.mark.slow  # model servers as child processes


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(SPEC, tmp_path_factory.mktemp("digits-generated"))


@pytest.fixture(scope="module")
def server(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    sock = tmp_path_factory.mktemp("digits-sock") / "model.sock"
    running = Server(generated, SPEC, "--socket", str(sock), "--port", "0")
    yield running
    assert running.stop() == 0, running.text()


@pytest.fixture(scope="module")
def pb(generated: Path) -> tuple[Any, Any]:
    return stubs(generated, "digit_net_v2")


def _request(pb2: Any, pixels: np.ndarray) -> Any:
    return pb2.PredictRequest(pixels=pb2.Tensor(shape=pixels.shape, data=pixels.tobytes()))


def _decode(tensor: Any, dtype: str) -> np.ndarray:
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_typed_stub_predicts_the_examples(server: Server, pb: tuple[Any, Any],
                                          transport: str) -> None:
    pb2, pb2_grpc = pb
    target = server.unix if transport == "unix" else server.tcp
    with grpc.insecure_channel(target) as channel:
        reply = pb2_grpc.DigitNetStub(channel).Predict(_request(pb2, PIXELS), timeout=10)
    assert _decode(reply.label, "<i8").tolist() == EXPECTED["label"]
    np.testing.assert_allclose(_decode(reply.probabilities, "<f4"), EXPECTED["probabilities"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_tritonclient_infers_a_tensor_batch(server: Server, transport: str) -> None:
    client = triton.InferenceServerClient(url=server.unix if transport == "unix" else server.tcp)
    pixels = triton.InferInput("pixels", list(PIXELS.shape), "FP32")
    pixels.set_data_from_numpy(PIXELS)
    wanted = [triton.InferRequestedOutput("label")]
    result = client.infer("digit-net", [pixels], outputs=wanted)
    assert result.as_numpy("label").tolist() == EXPECTED["label"]
    assert result.as_numpy("probabilities") is None  # only what was asked for
    meta = client.get_model_metadata("digit-net")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == \
        [("pixels", "FP32", [-1, 8, 8])]
    client.close()


def test_typed_oip_contents_with_a_safe_cast(server: Server) -> None:
    # tritonclient's own OIP stubs, with typed fp64_contents instead of raw bytes: the values
    # are exact in float32, so they convert.
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="pixels", datatype="FP64", shape=PIXELS.shape,
        contents=service_pb2.InferTensorContents(fp64_contents=PIXELS.ravel().tolist()))
    request = service_pb2.ModelInferRequest(model_name="digit-net", inputs=[tensor])
    with grpc.insecure_channel(server.tcp) as channel:
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert [o.name for o in reply.outputs] == ["label", "probabilities"]
    assert np.frombuffer(reply.raw_output_contents[0], "<i8").tolist() == EXPECTED["label"]


def _typed_error(server: Server, pb2: Any, request: Any) -> grpc.RpcError:
    with grpc.insecure_channel(server.unix) as channel:
        call = channel.unary_unary("/pyml.digit_net.v2.DigitNet/Predict")
        with pytest.raises(grpc.RpcError) as caught:
            call(request.SerializeToString(), timeout=30)
    return caught.value


def test_misshaped_tensor_names_it(server: Server, pb: tuple[Any, Any]) -> None:
    error = _typed_error(server, pb[0], _request(pb[0], PIXELS.reshape(4, 64)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels: shape [4, 64] does not match [-1, 8, 8]" in error.details()


def test_bytes_that_do_not_fill_the_shape(server: Server, pb: tuple[Any, Any]) -> None:
    pb2 = pb[0]
    request = pb2.PredictRequest(pixels=pb2.Tensor(shape=[5, 8, 8], data=PIXELS.tobytes()))
    error = _typed_error(server, pb2, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels: 1024 bytes do not hold shape [5, 8, 8]" in error.details()


def test_missing_tensor_names_it(server: Server, pb: tuple[Any, Any]) -> None:
    error = _typed_error(server, pb[0], pb[0].PredictRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels: missing input tensor" in error.details()


def test_oip_mistyped_and_extra_tensors_are_named(server: Server) -> None:
    client = triton.InferenceServerClient(url=server.unix)
    pixels = triton.InferInput("pixels", list(PIXELS.shape), "INT64")
    pixels.set_data_from_numpy(PIXELS.astype(np.int64))
    extra = triton.InferInput("noise", [1], "FP32")
    extra.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("digit-net", [pixels, extra])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "pixels: expected dtype float32, got int64" in caught.value.message()
    assert "noise: unexpected input tensor" in caught.value.message()
    client.close()


def test_message_over_the_limit_is_resource_exhausted(server: Server, pb: tuple[Any, Any]) -> None:
    big = np.zeros((70_000, 8, 8), dtype=np.float32)  # 17.9 MB > serving.max_message_bytes 16 MiB
    error = _typed_error(server, pb[0], _request(pb[0], big))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    test_typed_stub_predicts_the_examples(server, pb, "unix")


def test_eight_clients_times_a_thousand_requests(server: Server, pb: tuple[Any, Any]) -> None:
    pb2, pb2_grpc = pb
    data = _request(pb2, PIXELS[:1])
    failures: list[str] = []
    labels: list[int] = []

    def client() -> None:
        with grpc.insecure_channel(server.unix) as channel:
            stub = pb2_grpc.DigitNetStub(channel)
            for _ in range(1000):
                try:
                    labels.append(int(_decode(stub.Predict(data, timeout=30).label, "<i8")[0]))
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(labels) == 8000 and set(labels) == {EXPECTED["label"][0]}
