"""A gzip bomb against the model server: ~1 MiB on the wire that inflates to 1 GiB, and ~4 MiB
that inflates to 4 GiB, both far under ``serving.max_message_bytes`` while compressed. The server
must refuse them before inflating (it accepts identity only), keep serving, and its peak memory
must not move. The bombs are built by deflating zeros block by block, never held inflated."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from types import ModuleType

import grpc
import pytest
from raw_grpc import call, frame, gzip_zeros
from servers import Server, peak_rss
from serving_model import SERVICE, served_sink

MiB = 1 << 20
REFUSED = (grpc.StatusCode.UNIMPLEMENTED.value[0], grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
HEADROOM = 300 * MiB  # the bound on the server's peak above its idle peak


def test_the_bomb_is_what_it_claims() -> None:
    bomb = gzip_zeros(64 * MiB)
    assert len(bomb) < 80_000
    assert zlib.decompress(bomb, 31) == bytes(64 * MiB)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ModuleType]]:
    yield from served_sink(tmp_path_factory, "bomb")


def _predict(served: tuple[Server, ModuleType]) -> tuple[int | None, str]:
    server, pb2 = served
    request = pb2.PredictRequest(x={"values": [1.0, 2.0]}, label={"values": ["a", "b"]})
    reply = call(server.unix, f"/{SERVICE}/Predict", frame(request.SerializeToString()))
    return reply.status, reply.message


@pytest.mark.parametrize("inflated", [1 << 30, 4 << 30], ids=["1GiB", "4GiB"])
def test_a_gzip_bomb_is_refused_before_it_inflates(served: tuple[Server, ModuleType],
                                                   inflated: int) -> None:
    server = served[0]
    assert _predict(served) == (0, "")
    idle = peak_rss(server.process.pid)
    bomb = gzip_zeros(inflated)
    assert len(bomb) < (inflated >> 30) * 1.1 * MiB  # ~1 MiB per GiB: deflate's best ratio
    reply = call(server.unix, f"/{SERVICE}/Predict", frame(bomb, compressed=True),
                 encoding="gzip")
    peak = peak_rss(server.process.pid)
    print(f"{inflated >> 30} GiB bomb ({len(bomb)} bytes on the wire): status {reply.status}"
          f" {reply.message!r}; server peak RSS {idle / MiB:.0f} MiB idle ->"
          f" {peak / MiB:.0f} MiB")
    assert reply.status in REFUSED, reply
    assert peak - idle < HEADROOM, f"peak RSS grew by {(peak - idle) / MiB:.0f} MiB"
    assert _predict(served) == (0, ""), "the server stopped serving"
