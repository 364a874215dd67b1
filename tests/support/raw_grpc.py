"""gRPC calls made frame by frame over HTTP/2 (the ``h2`` package), for what no gRPC client
sends: a body compressed by someone else (a gzip bomb), a call that never sends its message,
bytes that are not a message at all.

A :class:`Connection` speaks to ``unix:PATH`` or ``HOST:PORT``. Streams are opened with
:meth:`Connection.open` (headers only), fed with :meth:`Connection.send`, and read with
:meth:`Connection.status`; :func:`call` does all three for one message.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

__all__ = ["Connection", "Reply", "call", "frame"]


@dataclass
class Reply:
    """What came back on one stream: the gRPC status (None if the stream was reset) and body."""

    status: int | None = None
    message: str = ""
    data: bytes = b""
    reset: int | None = None
    ended: bool = False
    headers: dict[str, str] = field(default_factory=dict)


MiB = 1 << 20


def gzip_zeros(size: int, block: int = 16 * MiB) -> bytes:
    """A valid gzip stream of ``size`` zero bytes, built without holding them inflated.

    After a full flush, deflate starts afresh, so every block of zeros compresses to the same
    bytes: compress one, repeat it, and close the stream with the zeros' CRC and length.
    """
    assert size % block == 0
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(block)
    compressed = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // block):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return (header + compressed * (size // block) + deflate.flush(zlib.Z_FINISH)
            + struct.pack("<II", crc, size & 0xFFFFFFFF))


def frame(message: bytes, *, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message: flag byte, 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 1 if compressed else 0, len(message)) + message


class Connection:
    """One HTTP/2 connection to a gRPC server, driven by hand."""

    def __init__(self, target: str, *, timeout: float = 30.0) -> None:
        if target.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(target.removeprefix("unix:"))
        else:
            host, port = target.rsplit(":", 1)
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                       header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.replies: dict[int, Reply] = {}
        self.closed = False
        self._flush()

    def open(self, path: str, *, encoding: str | None = None) -> int:
        """Start a call to ``path`` (``/package.Service/Method``): headers only, no message."""
        stream = self.h2.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                   (":authority", "localhost"), ("content-type", "application/grpc"),
                   ("te", "trailers")]
        if encoding is not None:
            headers.append(("grpc-encoding", encoding))
        self.h2.send_headers(stream, headers)
        self.replies[stream] = Reply()
        self._flush()
        return stream

    def send(self, stream: int, data: bytes, *, end: bool = True,
             deadline: float = 60.0) -> None:
        """Send ``data`` on ``stream`` as flow control allows; stops early if the server ends
        or resets the stream."""
        until = time.monotonic() + deadline
        view, offset = memoryview(data), 0
        while offset < len(data) and not self._over(stream):
            window = min(self.h2.local_flow_control_window(stream),
                         self.h2.max_outbound_frame_size, len(data) - offset)
            if window <= 0:
                if time.monotonic() > until:
                    raise TimeoutError("the server's flow-control window stayed closed")
                self._receive()
                continue
            self.h2.send_data(stream, bytes(view[offset:offset + window]))
            offset += window
            self._flush()
        if end and not self._over(stream):
            self.h2.end_stream(stream)
            self._flush()

    def status(self, stream: int, *, timeout: float = 60.0) -> Reply:
        """Wait until ``stream`` has its trailers (or is reset) and return what came back."""
        until = time.monotonic() + timeout
        while not self._over(stream):
            if time.monotonic() > until:
                raise TimeoutError(f"stream {stream} got no status in {timeout} s")
            self._receive()
        return self.replies[stream]

    def ping(self, *, timeout: float = 30.0) -> None:
        """Round-trip a PING: the server's transport is alive."""
        self.h2.ping(b"pymlc-ok")
        self._flush()
        self._pinged = False
        until = time.monotonic() + timeout
        while not self._pinged:
            if time.monotonic() > until:
                raise TimeoutError("no PING ack")
            self._receive()

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self._flush()
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _over(self, stream: int) -> bool:
        reply = self.replies[stream]
        return self.closed or reply.reset is not None or reply.status is not None

    def _flush(self) -> None:
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def _receive(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            self.closed = True
            return
        for event in self.h2.receive_data(data):
            self._on(event)
        self._flush()

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.PingAckReceived):
            self._pinged = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
        elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            reply = self.replies[event.stream_id]
            reply.headers.update({str(k): str(v) for k, v in event.headers})
            if "grpc-status" in reply.headers:
                reply.status = int(reply.headers["grpc-status"])
                reply.message = reply.headers.get("grpc-message", "")
        elif isinstance(event, h2.events.DataReceived):
            self.replies[event.stream_id].data += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.replies[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.StreamEnded):
            self.replies[event.stream_id].ended = True


def call(target: str, path: str, body: bytes, *, encoding: str | None = None,
         timeout: float = 60.0) -> Reply:
    """One call on a fresh connection: ``body`` (already framed) as its whole request."""
    with Connection(target, timeout=timeout) as connection:
        stream = connection.open(path, encoding=encoding)
        connection.send(stream, body, deadline=timeout)
        return connection.status(stream, timeout=timeout)
