"""Bytes that are not the request a method expects, sent to the typed service and to OIP: random
bytes, every prefix of a valid request, another service's messages, an empty message. Each gets
INVALID_ARGUMENT (OIP: NOT_FOUND when the bytes happen to name another model), none crashes
or stalls the server, and a valid call still succeeds after all of them."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from types import ModuleType

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as oip_pb  # not the runtime's: tritonclient loads after
from grpc_health.v1 import health_pb2
from servers import Server
from serving_model import SERVICE, served_sink

PREDICT, INFER = f"/{SERVICE}/Predict", "/inference.GRPCInferenceService/ModelInfer"
BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    yield from served_sink(tmp_path_factory, "garbage")


@pytest.fixture(scope="module")
def channel(served: tuple[Server, ModuleType]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(served[0].unix) as opened:
        yield opened


def _typed(pb2: ModuleType) -> bytes:
    # label first, then x: every proper prefix lacks the non-nullable x or cuts a field
    label = pb2.PredictRequest(label={"values": ["ab", "c"], "nulls": [False, True]})
    x = pb2.PredictRequest(x={"values": [1.5, 2.5]})
    return bytes(label.SerializeToString() + x.SerializeToString())


def _oip() -> bytes:
    request = oip_pb.ModelInferRequest(inputs=[
        {"name": "x", "datatype": "FP64", "shape": [2]},
        {"name": "label", "datatype": "BYTES", "shape": [2]}])
    request.raw_input_contents.extend([np.array([1.5, 2.5]).tobytes(),
                                       struct.pack("<I", 2) + b"ab" + struct.pack("<I", 1) + b"c"])
    return bytes(request.SerializeToString())


def _codes(channel: grpc.Channel, path: str, messages: list[bytes]) -> dict[str, int]:
    call = channel.unary_unary(path)
    codes: dict[str, int] = {}
    for message in messages:
        try:
            call(message, timeout=30)
            name = "OK"
        except grpc.RpcError as exc:
            name = exc.code().name
        codes[name] = codes.get(name, 0) + 1
    return codes


def _random(seed: int, count: int = 200) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([1, 3, 17, 100, 4096])) for _ in range(count)]


def test_the_valid_requests_succeed(served: tuple[Server, ModuleType],
                                    channel: grpc.Channel) -> None:
    assert _codes(channel, PREDICT, [_typed(served[1])]) == {"OK": 1}
    assert _codes(channel, INFER, [_oip()]) == {"OK": 1}


def test_random_bytes(channel: grpc.Channel) -> None:
    assert _codes(channel, PREDICT, _random(1)) == {BAD.name: 200}
    codes = _codes(channel, INFER, _random(2))
    assert set(codes) <= {BAD.name, "NOT_FOUND"} and codes.get(BAD.name, 0) >= 150, codes


def test_every_truncation_of_a_valid_request(served: tuple[Server, ModuleType],
                                             channel: grpc.Channel) -> None:
    typed, oip = _typed(served[1]), _oip()
    assert _codes(channel, PREDICT, [typed[:n] for n in range(len(typed))]) == \
        {BAD.name: len(typed)}
    assert _codes(channel, INFER, [oip[:n] for n in range(len(oip))]) == {BAD.name: len(oip)}


def test_another_services_messages(served: tuple[Server, ModuleType],
                                   channel: grpc.Channel) -> None:
    health = bytes(health_pb2.HealthCheckRequest(service="x" * 40).SerializeToString())
    typed, oip = _typed(served[1]), _oip()
    assert _codes(channel, PREDICT, [oip, health]) == {BAD.name: 2}
    assert _codes(channel, INFER, [typed]) == {BAD.name: 1}


def test_the_server_lives_on(served: tuple[Server, ModuleType], channel: grpc.Channel) -> None:
    assert served[0].process.poll() is None
    assert _codes(channel, PREDICT, [_typed(served[1])] * 3) == {"OK": 3}
    assert _codes(channel, INFER, [_oip()] * 3) == {"OK": 3}
