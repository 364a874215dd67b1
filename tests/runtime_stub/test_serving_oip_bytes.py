"""Raw OIP BYTES contents split in-process: exactly the elements the shape declares, fast, and
every malformed length chain refused with a message (never walked past the shape)."""

from __future__ import annotations

import struct

import pytest
import tritonclient.grpc.service_pb2  # noqa: F401 - first, so that the runtime borrows its OIP messages

from pymlc.runtime_stub.limits import LimitError, RequestLimits
from pymlc.runtime_stub.oip import _split_bytes, pb


def _raw(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_the_elements_the_shape_declares() -> None:
    assert _split_bytes(_raw(b"ab", b"", b"\x00\x01"), 3) == [b"ab", b"", b"\x00\x01"]
    assert _split_bytes(_raw(b"", b""), 2) == [b"", b""]
    assert _split_bytes(b"", 0) == []


@pytest.mark.parametrize(("raw", "count", "message"), [
    (_raw(b"ab", b"cd"), 1, "hold more than the 1 elements of the shape"),
    (_raw(b"ab"), 2, "cannot hold the 2 elements"),
    (_raw(b"ab")[:-1], 1, "end inside an element"),
    (_raw(b"abcdefgh") + b"\0", 2, "end before the 2 elements"),
    (struct.pack("<II", 0, 7), 2, "end inside an element"),  # only lengths, one of them not 0
])
def test_malformed_contents_are_refused(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _split_bytes(raw, count)


def test_the_object_limit_counts_declared_elements_before_any_is_decoded() -> None:
    limits = RequestLimits.of(800)  # 100 string/binary values
    request = pb.ModelInferRequest(inputs=[
        {"name": "a", "datatype": "BYTES", "shape": [10, 10]},
        {"name": "x", "datatype": "FP64", "shape": [1000]}])
    request.raw_input_contents.extend([b"", b""])
    limits.check_oip(request)  # 100: at the limit; the contents are not looked at
    request.inputs.add(name="b", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(b"")
    with pytest.raises(LimitError, match=r"101 string/binary values \(a: 100, b: 1\)"):
        limits.check_oip(request)
