"""gRPC channel arguments every pymlc server shares: the model server and the gateway.

One place for the settings that keep a hostile peer from costing a server more than the spec's
limits allow. Extend :func:`server_options` rather than passing such options by hand.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IDENTITY_ONLY", "server_options"]

# Bit 0 of the bitset is "identity" (no compression). With nothing else enabled, a compressed
# request is refused (UNIMPLEMENTED) before its body is inflated: a 1 MiB gzip message would
# otherwise inflate to 1 GiB before `max_receive_message_length` is ever checked.
IDENTITY_ONLY = 1


def server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Channel arguments for a pymlc gRPC server.

    Args:
        max_message_bytes: the largest request or response, in bytes.

    Returns:
        ``(name, value)`` pairs for ``grpc.server(options=...)``.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.compression_enabled_algorithms_bitset", IDENTITY_ONLY),
        ("grpc.so_reuseport", 0),
    ]
