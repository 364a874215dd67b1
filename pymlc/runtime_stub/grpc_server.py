"""The model server: one loaded model behind gRPC, on a Unix domain socket and/or TCP.

Services: the typed per-model service (``<package>.<Service>/Predict``, from the generated
stubs), the Open Inference Protocol v2 (``inference.GRPCInferenceService``), ``grpc.health.v1``
and server reflection. The model is loaded before anything listens, so "serving" always means
ready.

Status codes: a request that does not match the spec gets INVALID_ARGUMENT naming each field; a
message over ``serving.max_message_bytes`` RESOURCE_EXHAUSTED (from gRPC itself), as does a model
call beyond ``serving.max_concurrency`` and a compressed request (UNIMPLEMENTED: identity only,
see ``grpc_options``); an exception in ``predict`` (or outputs that break the spec) INTERNAL with
its type and message, the traceback going to the log; a prediction that takes longer than
``serving.timeout_ms`` DEADLINE_EXCEEDED. The server keeps serving after all of them.

Why an asyncio server with a thread pool: a client that opens ``Predict`` and never sends its
message must cost the server nothing it needs for other calls. gRPC's sync server hands each
call to a worker thread before its message has arrived, so four such streams held all four
threads (health checks timed out) and 64 filled ``maximum_concurrent_rpcs`` (every call,
health included, got RESOURCE_EXHAUSTED). Here waiting for a message is a coroutine on the
event loop; only a call whose request has arrived takes a slot of ``serving.max_concurrency``
(counted on the loop, so calls waiting for a thread count too and cannot pile up in memory),
and ``predict`` runs on ``serving.threads`` worker threads. Health, reflection and the OIP
metadata methods answer on the loop itself and never wait for a model call. Measured against
the sync server in one alternating run of bench/serving/run.py: see bench/README.md, serving.

The OIP stubs share the ``inference`` proto package with tritonclient's; if those are loaded
first in the same process, their (wire-identical) message classes are used instead (see ``oip``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from importlib import metadata as dist_metadata
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import oip
from .checks import ContractError, InputError, OutputError
from .codecs import columns_from_typed, tensors_from_typed, typed_from_columns, typed_from_tensors
from .config import ModelConfig
from .discovery import CONTRACT_KEY, contract_bytes
from .fused import typed_tensor_predict
from .grpc_options import server_options
from .limits import LimitError, RequestLimits
from .listen import Listen, bind, remove_socket
from .metrics import Metrics, serve_metrics
from .oip import pb as oip_pb
from .predict import Predictor
from .types import COLUMN_TYPES, TENSOR_DTYPES

__all__ = ["Listen", "ModelServer"]

log = logging.getLogger("pymlc.runtime")

_MAX_DETAILS = 4000  # status details travel in HTTP/2 trailers; keep them small

Handler = Callable[[bytes, Any], bytes]


class _Status(Exception):
    """Ends a request with a gRPC status other than OK."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelServer:
    """A loaded model, served over gRPC by an asyncio server.

    Args:
        config: the model's ``model.json``.
        model_root: the spec's folder.
        listen: where to listen.
        metrics_port: serve Prometheus metrics on this loopback port (None: off).

    Raises:
        ModelLoadError: the model could not be loaded.
        ConfigError: the generated stubs are missing.
    """

    def __init__(self, config: ModelConfig, model_root: Path, listen: Listen, *,
                 metrics_port: int | None = None) -> None:
        self.config = config
        self._contract = ((CONTRACT_KEY, contract_bytes(config)),)
        self.listen = listen
        self.metrics = Metrics(config.name)
        self._metrics_port = metrics_port
        self._predictor = Predictor(config, model_root)  # before listening: ready = loaded
        self._stubs = _import_stubs(config)
        self._health = health.aio.HealthServicer()
        self._typed_service = config.full_service
        self._timeout = config.serving.timeout_ms / 1000
        self._limits = RequestLimits.of(config.serving.max_message_bytes)
        self._active = 0  # model calls whose request has arrived; touched on the loop only
        self._pool: futures.ThreadPoolExecutor | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_http: Any = None
        self.addresses: list[str] = []

    async def start(self) -> list[str]:
        """Bind, start serving and report SERVING on the health service.

        Returns:
            The addresses listened on (``unix:PATH``, ``HOST:PORT``).

        Raises:
            OSError: a socket path is in use by a live server, or a port cannot be bound.
        """
        serving = self.config.serving
        self._pool = futures.ThreadPoolExecutor(serving.threads, thread_name_prefix="pymlc")
        server = grpc.aio.server(options=server_options(serving.max_message_bytes))
        # Generic handlers: grpc.aio (1.81) ignores add_registered_method_handlers.
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(self._typed_service, self._typed_methods()),
            grpc.method_handlers_generic_handler(oip.SERVICE, self._oip_methods())))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(self.service_names(), server)
        self.addresses = bind(server, self.listen)
        await server.start()
        self._server = server
        for name in ("", *self.service_names()):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self._metrics_port is not None:
            self._metrics_http = serve_metrics(self.metrics, self._metrics_port)
        return self.addresses

    def service_names(self) -> list[str]:
        """Every service this server exposes, as reflection lists them."""
        return [self._typed_service, oip.SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, let in-flight calls finish within ``grace`` seconds, clean up.

        Args:
            grace: seconds in-flight calls may still take before they are cancelled.
        """
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        if self.listen.socket:
            remove_socket(self.listen.socket)

    # --- handlers -----------------------------------------------------------------------

    def _typed_methods(self) -> dict[str, grpc.RpcMethodHandler]:
        predict = self._model_call("Predict", self._typed_predict())
        return {"Predict": grpc.unary_unary_rpc_method_handler(predict)}

    def _typed_predict(self) -> Handler:
        """The typed ``Predict`` as it runs on a worker thread: request bytes -> response bytes."""
        if self.config.kind == "dataframe":
            return self._predict_frame_typed
        predictor = self._predictor
        fused = typed_tensor_predict(
            self._stubs.PredictRequest, self._stubs.PredictResponse, predictor.input_tensors,
            predictor.output_tensors, predictor.model.predict, self._predict_tensors_typed)
        return fused or self._predict_tensors_typed

    def _oip_methods(self) -> dict[str, grpc.RpcMethodHandler]:
        handlers: dict[str, tuple[Callable[[Any, Any], Any], Any]] = {
            "ServerLive": (self._server_live, oip_pb.ServerLiveRequest),
            "ServerReady": (self._server_ready, oip_pb.ServerReadyRequest),
            "ModelReady": (self._model_ready, oip_pb.ModelReadyRequest),
            "ServerMetadata": (self._server_metadata, oip_pb.ServerMetadataRequest),
            "ModelMetadata": (self._model_metadata, oip_pb.ModelMetadataRequest),
        }
        methods = {name: grpc.unary_unary_rpc_method_handler(
            self._on_loop(name, fn), request_deserializer=message.FromString,
            response_serializer=_serialize) for name, (fn, message) in handlers.items()}
        # ModelInfer parses in the handler, so that a malformed message is INVALID_ARGUMENT.
        methods["ModelInfer"] = grpc.unary_unary_rpc_method_handler(
            self._model_call("ModelInfer", self._model_infer))
        return methods

    def _model_call(self, method: str, fn: Handler) -> Callable[[bytes, Any],
                                                                 Awaitable[bytes]]:
        """A model method: counted against ``max_concurrency``, run on a worker thread."""
        # Decided once: the success path runs on every call, and each Python step on it costs
        # far more in a busy server than in a loop (measured: bench/README.md, serving).
        observe = self.metrics.observe if self._metrics_port is not None else None
        debug = log.isEnabledFor(logging.DEBUG)
        timeout, limit = self._timeout, self.config.serving.max_concurrency
        timeout_ms = self.config.serving.timeout_ms
        run_in_executor, pool = asyncio.get_running_loop().run_in_executor, self._pool
        perf_counter = time.perf_counter

        def timed(data: bytes) -> tuple[bytes, float]:
            start = perf_counter()
            response = fn(data, None)
            elapsed = perf_counter() - start
            if elapsed > timeout:
                raise _Status(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"prediction took {elapsed * 1000:.0f} ms, over"
                              f" serving.timeout_ms={timeout_ms}")
            return response, elapsed

        async def behavior(data: bytes, context: Any) -> bytes:
            if self._active >= limit:
                await self._refuse(method, context, _Status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"{limit} calls are in progress, the"
                    f" most this server takes (serving.max_concurrency); retry later"), 0.0)
            self._active += 1
            start = perf_counter()
            try:
                response, elapsed = await run_in_executor(pool, timed, data)
            except Exception as exc:  # every failure becomes a status; the server lives on
                await self._refuse(method, context, exc, perf_counter() - start)
            finally:
                self._active -= 1
            if observe is not None:
                observe(method, "OK", elapsed)
            if debug:
                log.debug("%s OK %.2fms", method, elapsed * 1000)
            return response

        return behavior

    def _on_loop(self, method: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any],
                                                                              Awaitable[Any]]:
        """A cheap method (OIP metadata): answered on the event loop, never queued."""
        async def behavior(request: Any, context: Any) -> Any:
            try:
                return fn(request, context)
            except Exception as exc:
                await self._refuse(method, context, exc, 0.0)

        return behavior

    async def _refuse(self, method: str, context: Any, exc: Exception,
                      elapsed: float) -> NoReturn:
        code, message = _status_of(exc, method)
        if self._metrics_port is not None:
            self.metrics.observe(method, code.name, elapsed)
        log.warning("%s %s %.2fms: %s", method, code.name, elapsed * 1000, message)
        await context.abort(code, message[:_MAX_DETAILS])
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    def _predict_frame_typed(self, data: bytes, context: Any) -> bytes:
        request = _parse(self._stubs.PredictRequest, data)
        self._limits.check_typed(request, self._predictor.input_columns)
        columns = columns_from_typed(request, self._predictor.input_columns)
        outputs = self._predictor.predict_arrays(columns)
        response = typed_from_columns(self._stubs.PredictResponse(), outputs,
                                      self._predictor.output_columns)
        return bytes(response.SerializeToString())

    def _predict_tensors_typed(self, data: bytes, context: Any) -> bytes:
        request = _parse(self._stubs.PredictRequest, data)
        tensors = self._predictor.predict_tensors(
            tensors_from_typed(request, self._predictor.input_tensors))
        response = typed_from_tensors(self._stubs.PredictResponse(), tensors,
                                      self._predictor.output_tensors)
        return bytes(response.SerializeToString())

    def _model_infer(self, data: bytes, context: Any) -> bytes:
        request = _parse(oip_pb.ModelInferRequest, data)
        self._check_model(request.model_name, request.model_version)
        self._limits.check_oip(request)
        requested = [o.name for o in request.outputs]
        unknown = sorted(set(requested) - set(oip.output_names(self.config)))
        if unknown:
            raise InputError([f"{name}: requested output does not exist" for name in unknown])
        response = oip_pb.ModelInferResponse(model_name=self.config.name,
                                             model_version=self.config.version, id=request.id)
        predictor = self._predictor
        if self.config.kind == "dataframe":
            columns = oip.columns_from_oip(request, predictor.input_columns)
            outputs = predictor.predict_arrays(columns)
            oip.columns_to_oip(response, outputs, predictor.output_columns, requested)
        else:
            tensors = predictor.predict_tensors(oip.tensors_from_oip(request))
            oip.tensors_to_oip(response, tensors, predictor.output_tensors, requested)
        return bytes(response.SerializeToString())

    def _check_model(self, name: str, version: str) -> None:
        # An empty name means "the model": this server has exactly one.
        if name not in ("", self.config.name) or version not in ("", self.config.version):
            raise _Status(grpc.StatusCode.NOT_FOUND,
                          f"unknown model {name!r} version {version!r}; this server serves"
                          f" {self.config.name!r} version {self.config.version!r}")

    def _server_live(self, request: Any, context: Any) -> Any:
        return oip_pb.ServerLiveResponse(live=True)

    def _server_ready(self, request: Any, context: Any) -> Any:
        return oip_pb.ServerReadyResponse(ready=True)

    def _model_ready(self, request: Any, context: Any) -> Any:
        self._check_model(request.name, request.version)
        return oip_pb.ModelReadyResponse(ready=True)

    def _server_metadata(self, request: Any, context: Any) -> Any:
        return oip_pb.ServerMetadataResponse(name="pymlc", version=_runtime_version())

    def _model_metadata(self, request: Any, context: Any) -> Any:
        self._check_model(request.name, request.version)
        context.set_trailing_metadata(self._contract)  # what OIP cannot say (discovery.py)
        table = COLUMN_TYPES if self.config.kind == "dataframe" else TENSOR_DTYPES
        return oip.model_metadata(self.config, {name: row.oip for name, row in table.items()})


def _status_of(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, _Status):
        return exc.code, str(exc)
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, LimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, OutputError):
        log.error("%s: the model's outputs do not match the spec: %s", method, exc)
        return grpc.StatusCode.INTERNAL, f"OutputError: the model's outputs do not match the" \
                                         f" spec: {exc}"
    if isinstance(exc, ContractError):  # pragma: no cover - the two above are all there are
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    log.error("%s: predict raised", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


def _parse(message: Any, data: bytes) -> Any:
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise InputError([f"request is not a valid {message.DESCRIPTOR.full_name}: {exc}"]) \
            from None


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


def _import_stubs(config: ModelConfig) -> ModuleType:
    folder = str(config.generated_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the generated _pb2_grpc imports its _pb2 absolutely
    try:
        return importlib.import_module(f"{config.proto_module}_pb2")
    except ImportError as exc:
        from .config import ConfigError

        raise ConfigError(f"cannot import the generated stubs {config.proto_module}_pb2 from"
                          f" {folder}: {exc}; run `pymlc build`") from exc


def _runtime_version() -> str:
    try:
        return dist_metadata.version("pymlc")
    except dist_metadata.PackageNotFoundError:  # copied into an image without its metadata
        return "unknown"
