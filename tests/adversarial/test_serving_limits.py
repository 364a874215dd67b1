"""The default limits fit together: a request of the default ``serving.max_message_bytes`` is
served inside the default ``serving.memory_mb`` with room to spare for the model, and a request
that packs millions of empty strings into few bytes is refused from its counts, before a value
is decoded (it took 16 s to decode 15M empty OIP BYTES elements, then refused them)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as oip_pb  # not the runtime's: tritonclient loads after
from servers import Server, peak_rss
from serving_model import SERVICE, served_sink

from pymlc.compiler.lower import DEFAULT_SERVING

MiB = 1 << 20
LIMIT = DEFAULT_SERVING.max_message_bytes
MEMORY = DEFAULT_SERVING.memory_mb * MiB
MARGIN = 0.6  # the server's peak may take this share of the memory limit; the rest is the model's
PREDICT, INFER = f"/{SERVICE}/Predict", "/inference.GRPCInferenceService/ModelInfer"
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    # The default limits, but time enough for a loaded machine: the deadline is not measured.
    yield from served_sink(tmp_path_factory, "limits", "serving:\n  timeout_ms: 60000\n")


def _typed(pb2: ModuleType, rows: int, text: str | None) -> Any:
    request = pb2.PredictRequest(x={"values": np.arange(rows, dtype=np.float64)})
    request.label.values.extend([text or ""] * rows)
    if text is None:
        request.label.nulls.extend([True] * rows)
    return request


def _oip(rows: int, text: bytes) -> Any:
    request = oip_pb.ModelInferRequest(inputs=[
        {"name": "x", "datatype": "FP64", "shape": [rows]},
        {"name": "label", "datatype": "BYTES", "shape": [rows]}])
    request.raw_input_contents.extend([np.arange(rows, dtype=np.float64).tobytes(),
                                       (struct.pack("<I", len(text)) + text) * rows])
    return request


def _largest(make: Callable[[int], Any]) -> bytes:
    """The largest request ``make`` builds within the limit (less 1 KiB for gRPC's framing)."""
    rows = LIMIT // 8
    while (size := make(rows).ByteSize()) > LIMIT - 1024:
        rows = int(rows * (LIMIT - 1024) / size * 0.999)
    return bytes(make(rows).SerializeToString())


def _send(server: Server, path: str, data: bytes) -> tuple[grpc.StatusCode, str, float]:
    with grpc.insecure_channel(server.unix, options=UNLIMITED) as channel:
        start = time.perf_counter()
        try:
            channel.unary_unary(path)(data, timeout=120)
            outcome = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            outcome = exc.code(), exc.details() or ""
        return (*outcome, time.perf_counter() - start)


@pytest.mark.parametrize("case", ["typed float64, null strings", "typed float64, strings",
                                  "OIP FP64, BYTES"])
def test_a_request_of_the_default_max_size_fits_the_default_memory(
        served: tuple[Server, ModuleType], case: str) -> None:
    server, pb2 = served
    path, data = {
        "typed float64, null strings": (PREDICT, lambda: _largest(lambda n: _typed(pb2, n, None))),
        "typed float64, strings": (PREDICT, lambda: _largest(lambda n: _typed(pb2, n, "ab"))),
        "OIP FP64, BYTES": (INFER, lambda: _largest(lambda n: _oip(n, b"ab"))),
    }[case]
    request = data()
    code, details, seconds = _send(server, path, request)
    peak = peak_rss(server.process.pid)
    print(f"{case}: {len(request) / MiB:.1f} MiB, {code.name} in {seconds:.2f} s; server peak"
          f" RSS so far {peak / MiB:.0f} MiB of memory_mb {MEMORY // MiB}")
    assert code == grpc.StatusCode.OK, details
    assert peak < MARGIN * MEMORY


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    """The sink with the old default limit, 64 MiB, where 15M empty elements fit a message."""
    yield from served_sink(tmp_path_factory, "roomy",
                           "serving:\n  max_message_bytes: 67108864\n")


EMPTY = 15_000_000


def _empty_oip(shape: int) -> bytes:
    request = oip_pb.ModelInferRequest(inputs=[{"name": "label", "datatype": "BYTES",
                                                "shape": [shape]}])
    request.raw_input_contents.append(bytes(4 * EMPTY))
    return bytes(request.SerializeToString())


def test_millions_of_empty_strings_are_refused_from_their_count(
        roomy: tuple[Server, ModuleType]) -> None:
    server, pb2 = roomy
    typed = pb2.PredictRequest()
    typed.label.values.extend([""] * EMPTY)
    for name, path, data in (("OIP raw BYTES", INFER, _empty_oip(EMPTY)),
                             ("typed strings", PREDICT, bytes(typed.SerializeToString()))):
        code, details, seconds = _send(server, path, data)
        print(f"{EMPTY:,} empty {name} ({len(data) / MiB:.0f} MiB): {code.name} in"
              f" {seconds:.2f} s: {details[:100]}")
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert "string/binary values" in details and "serving.max_message_bytes" in details
    assert _send(server, PREDICT, bytes(_typed(pb2, 2, "ab").SerializeToString()))[0] == \
        grpc.StatusCode.OK


def test_a_shape_that_understates_the_elements_is_refused_without_walking_them(
        roomy: tuple[Server, ModuleType]) -> None:
    code, details, seconds = _send(roomy[0], INFER, _empty_oip(1))
    print(f"shape [1] over {EMPTY:,} empty elements: {code.name} in {seconds:.2f} s")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "label: raw BYTES contents hold more than the 1 elements of the shape" in details
