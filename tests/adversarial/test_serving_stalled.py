"""Slow-loris streams against the model server: clients that open ``Predict`` (typed) or
``ModelInfer`` (OIP) and never send their message. They must hold no worker thread and not
count against ``serving.max_concurrency``: with 64 of each held open, health checks and normal
calls are still answered within a second, never with RESOURCE_EXHAUSTED."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as oip_pb  # not the runtime's: tritonclient loads after
from grpc_health.v1 import health_pb2, health_pb2_grpc
from raw_grpc import Connection
from servers import Server
from serving_model import SERVICE, served_sink

STALLED = 64  # of each kind: typed Predict and OIP ModelInfer
PER_CONNECTION = 16
PROMISE = 1.0  # seconds: what the issue promises for health and a normal call


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    yield from served_sink(tmp_path_factory, "stalled")


@pytest.fixture
def stalled(served: tuple[Server, ModuleType]) -> Iterator[list[Connection]]:
    server = served[0]
    paths = [f"/{SERVICE}/Predict", "/inference.GRPCInferenceService/ModelInfer"]
    connections = []
    for path in paths:
        for _ in range(STALLED // PER_CONNECTION):
            connection = Connection(server.unix)
            for _ in range(PER_CONNECTION):
                connection.open(path)  # headers, then nothing
            connection.ping()  # the server has seen every stream
            connections.append(connection)
    yield connections
    for connection in connections:
        connection.close()


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def test_stalled_streams_hold_no_thread_and_no_call_slot(
        served: tuple[Server, ModuleType], stalled: list[Connection]) -> None:
    server, pb2 = served
    with grpc.insecure_channel(server.unix) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        check = health_pb2_grpc.HealthStub(channel).Check
        predict = channel.unary_unary(f"/{SERVICE}/Predict",
                                      request_serializer=pb2.PredictRequest.SerializeToString,
                                      response_deserializer=pb2.PredictResponse.FromString)
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=oip_pb.ModelInferRequest.SerializeToString,
                                    response_deserializer=oip_pb.ModelInferResponse.FromString)
        request = pb2.PredictRequest(x={"values": [1.5, 2.5]}, label={"values": ["a", "b"]})
        oip = oip_pb.ModelInferRequest(inputs=[
            {"name": "x", "datatype": "FP64", "shape": [2]},
            {"name": "label", "datatype": "BYTES", "shape": [2]}])
        oip.raw_input_contents.extend([np.array([1.5, 2.5]).tobytes(),
                                       b"\1\0\0\0a\1\0\0\0b"])
        timings = {}
        for _ in range(5):  # a few rounds: one slow answer on a loaded machine is not the point
            for name, call in (
                    ("health", lambda: check(health_pb2.HealthCheckRequest(), timeout=30)),
                    ("predict", lambda: predict(request, timeout=30)),
                    ("infer", lambda: infer(oip, timeout=30))):
                elapsed, reply = _timed(call)
                timings.setdefault(name, []).append(elapsed)
        print({name: f"{min(t) * 1000:.1f}-{max(t) * 1000:.1f} ms" for name, t in timings.items()},
              f"with {2 * STALLED} stalled streams")
        assert reply.outputs[0].name == "y"
        assert list(predict(request, timeout=30).y.values) == [1.5, 2.5]
        for name, seconds in timings.items():
            assert min(seconds) <= PROMISE, f"{name}: {seconds}"
    for connection in stalled:  # the stalled streams are still open, and were never answered
        assert not connection.closed
        assert all(reply.status is None and reply.reset is None
                   for reply in connection.replies.values())
