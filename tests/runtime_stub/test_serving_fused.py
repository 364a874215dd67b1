"""The fused typed tensor Predict (``runtime_stub.fused``) against the general path it stands in
for: for every request and every kind of model output, the same response bytes or the same
error, word for word. The model is digit-net's, or a digit-net that returns something else."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from serving_support import SPECS, build

from pymlc.runtime_stub.checks import ContractError, TensorSpec, tensor_specs
from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.fused import typed_tensor_predict
from pymlc.runtime_stub.grpc_server import Listen, ModelServer

SPEC = SPECS / "digit-net"
PIXELS = np.random.default_rng(7).uniform(0, 16, (5, 8, 8)).astype(np.float32)
Handler = Callable[[bytes, Any], bytes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ModelServer:
    generated = build(SPEC, tmp_path_factory.mktemp("fused-generated"))
    return ModelServer(ModelConfig.load(generated / "model.json"), SPEC, Listen())


def _paths(server: ModelServer) -> tuple[Handler, Handler]:
    predictor = server._predictor
    fused = typed_tensor_predict(
        server._stubs.PredictRequest, server._stubs.PredictResponse, predictor.input_tensors,
        predictor.output_tensors, predictor.model.predict, server._predict_tensors_typed)
    assert fused is not None, "digit-net's shapes are a batch of fixed-size samples"
    return fused, server._predict_tensors_typed


def _outcome(handler: Handler, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", handler(data, None)
    except ContractError as exc:
        return type(exc).__name__, str(exc)


def _request(server: ModelServer, shape: Any, data: bytes | None, **extra: Any) -> bytes:
    pb2 = server._stubs
    request = pb2.PredictRequest(**extra)
    if data is not None:
        request.pixels.shape.extend(shape)
        request.pixels.data = data
    return bytes(request.SerializeToString())


REQUESTS: dict[str, Callable[[ModelServer], bytes]] = {
    "the spec's shape": lambda s: _request(s, PIXELS.shape, PIXELS.tobytes()),
    "one sample": lambda s: _request(s, (1, 8, 8), PIXELS[:1].tobytes()),
    "an empty batch": lambda s: _request(s, (0, 8, 8), b""),
    "a sample of the wrong size": lambda s: _request(s, (5, 8, 7), PIXELS.tobytes()[:5 * 56 * 4]),
    "bytes that do not fill the shape": lambda s: _request(s, (5, 8, 8), PIXELS.tobytes()[:-4]),
    "a -1 in the shape": lambda s: _request(s, (-1, 8, 8), PIXELS.tobytes()),
    "a flat batch": lambda s: _request(s, (5, 64), PIXELS.tobytes()),
    "no batch dimension": lambda s: _request(s, (8, 8), PIXELS[0].tobytes()),
    "the tensor missing": lambda s: _request(s, (), None),
    "an unknown field": lambda s: _request(s, PIXELS.shape, PIXELS.tobytes())
    + b"\xa0\x06\x01",  # field 100, varint 1
    "not a message": lambda s: b"\xff\xff\xff",
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_every_request_gets_what_the_general_path_gives(server: ModelServer, case: str) -> None:
    fused, general = _paths(server)
    data = REQUESTS[case](server)
    expected = _outcome(general, data)
    assert _outcome(fused, data) == expected
    if case in ("the spec's shape", "one sample", "an empty batch"):
        assert expected[0] == "ok"


class _Returns:
    """digit-net's own predict, then ``change`` applied to what it returned."""

    def __init__(self, model: Any, change: Callable[[dict[str, np.ndarray]], Any]) -> None:
        self.model, self.change = model, change

    def predict(self, tensors: dict[str, np.ndarray]) -> Any:
        return self.change(self.model.predict(tensors))


OUTPUTS: dict[str, Callable[[dict[str, np.ndarray]], Any]] = {
    "exactly the spec's": lambda out: out,
    "label as int32 (a lossless cast)": lambda out: {**out, "label": out["label"].astype(np.int32)},
    "probabilities as float64 (not lossless)":
        lambda out: {**out, "probabilities": out["probabilities"].astype(np.float64)},
    "probabilities in Fortran order": lambda out: {
        **out, "probabilities": np.asfortranarray(out["probabilities"])},
    "probabilities big-endian": lambda out: {
        **out, "probabilities": out["probabilities"].astype(">f4")},
    "label as a list": lambda out: {**out, "label": out["label"].tolist()},
    "label missing": lambda out: {"probabilities": out["probabilities"]},
    "an extra output": lambda out: {**out, "logits": out["probabilities"]},
    "probabilities misshaped": lambda out: {
        **out, "probabilities": out["probabilities"][:, :5]},
    "a read-only mapping": lambda out: types.MappingProxyType(out),
    "a tuple": lambda out: (out["label"], out["probabilities"]),
}


@pytest.mark.parametrize("case", list(OUTPUTS))
def test_every_model_output_gets_what_the_general_path_gives(server: ModelServer,
                                                              case: str) -> None:
    original = server._predictor.model
    calls: list[int] = []
    returns = _Returns(original, OUTPUTS[case])

    def counted(tensors: dict[str, np.ndarray]) -> Any:
        calls.append(1)
        return returns.predict(tensors)

    server._predictor.model = types.SimpleNamespace(predict=counted)  # type: ignore[assignment]
    try:
        fused, general = _paths(server)
        data = REQUESTS["the spec's shape"](server)
        expected = _outcome(general, data)
        calls.clear()
        assert _outcome(fused, data) == expected
        assert len(calls) == 1, "the fused path calls predict once, whatever it returned"
    finally:
        server._predictor.model = original


def test_wildcards_beyond_the_batch_dimension_keep_the_general_path(server: ModelServer) -> None:
    fixed, = tensor_specs([types.SimpleNamespace(name="pixels", type="float32", shape=[-1, 8, 8])])
    free = TensorSpec(fixed.name, fixed.type, fixed.dtype, (-1, -1, 8), None, 3)
    pb2 = server._stubs
    for inputs, outputs, usable in (([free], [fixed], False), ([fixed], [free], False),
                                    ([fixed], [fixed], True)):
        fused = typed_tensor_predict(pb2.PredictRequest, pb2.PredictResponse, inputs, outputs,
                                     print, lambda data, context: data)
        assert (fused is not None) == usable


def test_the_server_serves_digit_net_through_the_fused_path(
        server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The general path refuses to run: the served handler still answers the spec's request.
    def refuse(data: bytes, context: Any) -> bytes:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(server, "_predict_tensors_typed", refuse)
    behavior = server._typed_predict()
    reply = server._stubs.PredictResponse.FromString(
        behavior(REQUESTS["the spec's shape"](server), None))
    assert list(reply.label.shape) == [5]
