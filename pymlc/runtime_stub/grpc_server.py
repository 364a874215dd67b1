"""The model server: one loaded model behind gRPC, on a Unix domain socket and/or TCP.

Services: the typed per-model service (``<package>.<Service>/Predict``, from the generated
stubs), the Open Inference Protocol v2 (``inference.GRPCInferenceService``), ``grpc.health.v1``
and server reflection. The model is loaded before anything listens, so "serving" always means
ready.

Status codes: a request that does not match the spec gets INVALID_ARGUMENT naming each field; a
message over ``serving.max_message_bytes`` RESOURCE_EXHAUSTED (from gRPC itself, as does a call
beyond ``serving.max_concurrency``); an exception in ``predict`` (or outputs that break the spec)
INTERNAL with its type and message, the traceback going to the log; a prediction that takes
longer than ``serving.timeout_ms`` DEADLINE_EXCEEDED. The server keeps serving after all of them.

The OIP stubs share the ``inference`` proto package with tritonclient's; if those are loaded
first in the same process, their (wire-identical) message classes are used instead (see ``oip``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from importlib import metadata as dist_metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import oip
from .checks import ContractError, InputError, OutputError
from .codecs import columns_from_typed, tensors_from_typed, typed_from_columns, typed_from_tensors
from .config import ModelConfig, tcp_address
from .fused import typed_tensor_predict
from .grpc_options import server_options
from .metrics import Metrics, serve_metrics
from .oip import pb as oip_pb
from .predict import Predictor
from .types import COLUMN_TYPES, TENSOR_DTYPES

__all__ = ["Listen", "ModelServer"]

log = logging.getLogger("pymlc.runtime")

_MAX_DETAILS = 4000  # status details travel in HTTP/2 trailers; keep them small


@dataclass(frozen=True)
class Listen:
    """Where to listen: a Unix socket path and/or a TCP port (0 = any free port) on ``host``."""

    socket: str | None = None
    port: int | None = None
    host: str = "127.0.0.1"


class _Status(Exception):
    """Ends a request with a gRPC status other than OK."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelServer:
    """A loaded model, served over gRPC.

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
        self.listen = listen
        self.metrics = Metrics(config.name)
        self._metrics_port = metrics_port
        self._predictor = Predictor(config, model_root)  # before listening: ready = loaded
        self._stubs = _import_stubs(config)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._typed_service = f"{config.proto_package}.{config.service}"
        self._timeout = config.serving.timeout_ms / 1000
        self._server: grpc.Server | None = None
        self._metrics_http: Any = None
        self.addresses: list[str] = []

    def start(self) -> list[str]:
        """Bind, start serving and report SERVING on the health service.

        Returns:
            The addresses listened on (``unix:PATH``, ``HOST:PORT``).

        Raises:
            OSError: a socket path is in use by a live server, or a port cannot be bound.
        """
        serving = self.config.serving
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=serving.threads,
                                                        thread_name_prefix="pymlc"),
                             options=server_options(serving.max_message_bytes),
                             maximum_concurrent_rpcs=serving.max_concurrency)
        # Registered (not generic) methods: the core matches them by name before Python runs,
        # which saves a generic-handler lookup on every call.
        server.add_registered_method_handlers(self._typed_service, self._typed_methods())
        server.add_registered_method_handlers(oip.SERVICE, self._oip_methods())
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(self.service_names(), server)
        self.addresses = self._bind(server)
        server.start()
        self._server = server
        for name in ("", *self.service_names()):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self._metrics_port is not None:
            self._metrics_http = serve_metrics(self.metrics, self._metrics_port)
        return self.addresses

    def service_names(self) -> list[str]:
        """Every service this server exposes, as reflection lists them."""
        return [self._typed_service, oip.SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME]

    def stop(self, grace: float) -> None:
        """Stop accepting calls, let in-flight calls finish within ``grace`` seconds, clean up.

        Args:
            grace: seconds in-flight calls may still take before they are cancelled.
        """
        self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        if self.listen.socket:
            _remove_socket(self.listen.socket)

    # --- binding ------------------------------------------------------------------------

    def _bind(self, server: grpc.Server) -> list[str]:
        addresses = []
        if self.listen.socket:
            path = self.listen.socket
            _prepare_socket_path(path)
            if not server.add_insecure_port(f"unix:{path}"):
                raise OSError(f"cannot listen on unix:{path}")
            os.chmod(path, 0o660)  # owner and group (the client's) only
            addresses.append(f"unix:{path}")
        if self.listen.port is not None:
            host = self.listen.host
            port = server.add_insecure_port(tcp_address(host, self.listen.port))
            if not port:
                raise OSError(f"cannot listen on {tcp_address(host, self.listen.port)}")
            addresses.append(tcp_address(host, port))
        return addresses

    # --- handlers -----------------------------------------------------------------------

    def _typed_methods(self) -> dict[str, grpc.RpcMethodHandler]:
        predict: Callable[[bytes, grpc.ServicerContext], bytes] | None
        if self.config.kind == "dataframe":
            predict = self._predict_frame_typed
        else:
            predictor = self._predictor
            predict = typed_tensor_predict(
                self._stubs.PredictRequest, self._stubs.PredictResponse, predictor.input_tensors,
                predictor.output_tensors, predictor.model.predict, self._predict_tensors_typed)
            predict = predict or self._predict_tensors_typed
        return {"Predict": grpc.unary_unary_rpc_method_handler(self._wrap("Predict", predict))}

    def _oip_methods(self) -> dict[str, grpc.RpcMethodHandler]:
        handlers: dict[str, tuple[Callable[[Any, grpc.ServicerContext], Any], Any]] = {
            "ServerLive": (self._server_live, oip_pb.ServerLiveRequest),
            "ServerReady": (self._server_ready, oip_pb.ServerReadyRequest),
            "ModelReady": (self._model_ready, oip_pb.ModelReadyRequest),
            "ServerMetadata": (self._server_metadata, oip_pb.ServerMetadataRequest),
            "ModelMetadata": (self._model_metadata, oip_pb.ModelMetadataRequest),
        }
        methods = {name: grpc.unary_unary_rpc_method_handler(
            self._wrap(name, fn, timed=False), request_deserializer=message.FromString,
            response_serializer=_serialize) for name, (fn, message) in handlers.items()}
        # ModelInfer parses in the handler, so that a malformed message is INVALID_ARGUMENT.
        methods["ModelInfer"] = grpc.unary_unary_rpc_method_handler(
            self._wrap("ModelInfer", self._model_infer))
        return methods

    def _wrap(self, method: str, fn: Callable[[Any, grpc.ServicerContext], Any], *,
              timed: bool = True) -> Callable[[Any, grpc.ServicerContext], Any]:
        # Decided once: the success path runs on every call, and each Python step on it costs
        # far more in a busy server than in a loop (measured: bench/README.md, serving).
        observe = self.metrics.observe if self._metrics_port is not None else None
        debug = log.isEnabledFor(logging.DEBUG)
        timeout = self._timeout if timed else float("inf")

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                response = fn(request, context)
                elapsed = time.perf_counter() - start
                if elapsed > timeout:
                    raise _Status(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"prediction took {elapsed * 1000:.0f} ms, over"
                                  f" serving.timeout_ms={self.config.serving.timeout_ms}")
            except Exception as exc:  # every failure becomes a status; the server lives on
                code, message = _status_of(exc, method)
                self._failed(method, code, time.perf_counter() - start, message)
                context.abort(code, message[:_MAX_DETAILS])
            if observe is not None:
                observe(method, "OK", elapsed)
            if debug:
                log.debug("%s OK %.2fms", method, elapsed * 1000)
            return response

        return behavior

    def _failed(self, method: str, code: grpc.StatusCode, elapsed: float, message: str) -> None:
        if self._metrics_port is not None:
            self.metrics.observe(method, code.name, elapsed)
        log.warning("%s %s %.2fms: %s", method, code.name, elapsed * 1000, message)

    def _predict_frame_typed(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        request = _parse(self._stubs.PredictRequest, data)
        columns = columns_from_typed(request, self._predictor.input_columns)
        outputs = self._predictor.predict_arrays(columns)
        response = typed_from_columns(self._stubs.PredictResponse(), outputs,
                                      self._predictor.output_columns)
        return bytes(response.SerializeToString())

    def _predict_tensors_typed(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        request = _parse(self._stubs.PredictRequest, data)
        tensors = self._predictor.predict_tensors(
            tensors_from_typed(request, self._predictor.input_tensors))
        response = typed_from_tensors(self._stubs.PredictResponse(), tensors,
                                      self._predictor.output_tensors)
        return bytes(response.SerializeToString())

    def _model_infer(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        request = _parse(oip_pb.ModelInferRequest, data)
        self._check_model(request.model_name, request.model_version)
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

    def _server_live(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip_pb.ServerLiveResponse(live=True)

    def _server_ready(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip_pb.ServerReadyResponse(ready=True)

    def _model_ready(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_model(request.name, request.version)
        return oip_pb.ModelReadyResponse(ready=True)

    def _server_metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return oip_pb.ServerMetadataResponse(name="pymlc", version=_runtime_version())

    def _model_metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._check_model(request.name, request.version)
        table = COLUMN_TYPES if self.config.kind == "dataframe" else TENSOR_DTYPES
        return oip.model_metadata(self.config, {name: row.oip for name, row in table.items()})


def _status_of(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, _Status):
        return exc.code, str(exc)
    if isinstance(exc, InputError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
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


def _prepare_socket_path(path: str) -> None:
    """Make the socket's folder, and remove a stale socket file left by a dead server."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:  # nobody listening: a leftover from a server that died
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another server is listening on {path}")


def _remove_socket(path: str) -> None:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
