"""Server reflection through the gateway: its own services and every model's typed service.

The gateway forwards typed calls as raw bytes and holds none of the models' descriptors, so it
answers what it knows itself (the service list, OIP, health, reflection) and asks the model
server that owns a symbol for the rest: a symbol of the package ``pyml.fare_estimator.v1``
belongs to the route whose typed service is in that package. A file asked for by name comes
from the model that sent it before, else from the first typed model that has it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from .gateway_routes import Route, RouteTable

__all__ = ["REFLECTION_METHOD", "GatewayReflection", "ask_once", "reflection_call"]

log = logging.getLogger("pymlc.gateway")

REFLECTION_METHOD = f"/{reflection.SERVICE_NAME}/ServerReflectionInfo"

# Asks a model's server one reflection question; None if it cannot be reached.
Ask = Callable[[Route, Any], Awaitable[Any]]


class GatewayReflection:
    """The gateway's reflection service (``grpc.reflection.v1alpha``).

    Args:
        own: the services the gateway serves itself.
        table: the routes; their typed services are listed too.
        ask: how to put one question to a model's server.
    """

    def __init__(self, own: Iterable[str], table: RouteTable, ask: Ask) -> None:
        self._table = table
        self._ask = ask
        typed = [r.service for r in table.routes if r.service]
        self._local = reflection.ReflectionServicer(sorted({*own, *typed}))
        self._files: dict[str, Route] = {}  # file name -> the model that sent it

    async def ServerReflectionInfo(self, request_iterator: AsyncIterator[Any],
                                   context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield await self._answer(request)

    async def _answer(self, request: Any) -> Any:
        local = self._local_answer(request)
        if request.HasField("list_services") or not local.HasField("error_response"):
            return local
        for route in self._owners(request):
            found = await self._ask(route, request)
            if found is not None and not found.HasField("error_response"):
                self._learn(route, found)
                return found
        return local

    def _local_answer(self, request: Any) -> Any:
        return next(iter(self._local.ServerReflectionInfo(iter([request]), None)))

    def _owners(self, request: Any) -> list[Route]:
        """The model servers that may know the answer, in the order to ask them."""
        kind = request.WhichOneof("message_request")
        if kind == "file_by_filename":
            learnt = self._files.get(request.file_by_filename)
            typed = [r for r in self._table.routes if r.service and r is not learnt]
            return [learnt, *typed] if learnt else typed
        symbol = {"file_containing_symbol": request.file_containing_symbol,
                  "file_containing_extension": request.file_containing_extension.containing_type,
                  "all_extension_numbers_of_type": request.all_extension_numbers_of_type
                  }.get(kind or "", "")
        route = self._table.by_symbol(symbol) if symbol else None
        return [route] if route else []

    def _learn(self, route: Route, answer: Any) -> None:
        for serialized in answer.file_descriptor_response.file_descriptor_proto:
            name = descriptor_pb2.FileDescriptorProto.FromString(serialized).name
            self._files.setdefault(name, route)


def reflection_call(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamMultiCallable:
    """The reflection method of a model server's channel, with its messages' codecs."""
    return channel.stream_stream(
        REFLECTION_METHOD,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)


async def ask_once(channel: grpc.aio.Channel, request: Any, timeout: float) -> Any:
    """One reflection question on a fresh stream; the first answer, or None."""
    try:
        call = reflection_call(channel)(iter([request]), timeout=timeout)
        async for answer in call:
            return answer
    except grpc.RpcError as exc:
        log.debug("reflection question failed: %s", exc)
    return None
