"""``pymlc.Client``: predictions from a running model server, DataFrames or tensors in and out.

A client of the model's typed gRPC service (the one the spec generates), on a Unix socket
(``unix:/run/pyml/model.sock``, or just the path) or a TCP address (``host:port``)::

    client = pymlc.Client("unix:/run/pyml/model.sock")
    fares = client.predict(pd.DataFrame({"trip_distance_km": [3.2], ...}))

The request is encoded and the reply decoded by the runtime's own codecs and checks, the ones
the server uses, so a client sees exactly the dtypes the spec declares. What the client needs
to know comes from the server itself: the contract from the trailing metadata of an OIP
``ModelMetadata`` call (``runtime_stub.discovery``), the message classes from gRPC server
reflection. Give ``spec=`` (a ``pyml.yaml``) to take the contract from the spec instead, e.g.
to catch a server that runs another version of the model. ``pymlc predict`` and ``pymlc verify``
call servers through this class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

from .runtime_stub import checks, codecs
from .runtime_stub.config import ModelConfig
from .runtime_stub.discovery import CONTRACT_KEY, Contract, parse_contract
from .runtime_stub.oip import pb as oip_pb

__all__ = ["Client", "ClientError"]

_DISCOVERY_TIMEOUT = 30.0


class ClientError(Exception):
    """A call failed; the message says why and what to do.

    Attributes:
        code: the gRPC status name (``INVALID_ARGUMENT``, ``UNAVAILABLE``, ...), or None when
            the call never reached the server's answer (a local contract check failed).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class Client:
    """Calls one model's typed ``Predict``; a context manager that closes its channel.

    Args:
        target: ``unix:PATH``, a socket path (``/run/pyml/model.sock``), or ``HOST:PORT``.
        spec: a ``pyml.yaml`` (or its folder) to take the contract from; default: ask the
            server.
        timeout: seconds per call (default 30).

    Raises:
        ClientError: the server cannot be reached, or does not serve a pymlc model.
    """

    def __init__(self, target: str | Path, *, spec: str | Path | None = None,
                 timeout: float = 30.0) -> None:
        self.target = _grpc_target(target)
        self.timeout = timeout
        contract = _contract_of_spec(Path(spec)) if spec is not None else None
        self._open(contract)

    @classmethod
    def for_config(cls, target: str | Path, config: ModelConfig, *,
                   timeout: float = 30.0) -> Client:
        """A client for the model a loaded ``model.json`` describes (no discovery call)."""
        client = cls.__new__(cls)
        client.target, client.timeout = _grpc_target(target), timeout
        client._open(Contract.of(config))
        return client

    def _open(self, contract: Contract | None) -> None:
        self.contract = contract if contract is not None else _discover(self.target)
        limit = self.contract.max_message_bytes
        self._channel = grpc.insecure_channel(
            self.target, options=[("grpc.max_send_message_length", limit),
                                  ("grpc.max_receive_message_length", limit)])
        try:
            request, response = _messages(self._channel, self.contract.service, self.target)
        except BaseException:
            self._channel.close()
            raise
        self._request, self._response = request, response
        self._predict = self._channel.unary_unary(
            f"/{self.contract.service}/Predict",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response.FromString)
        if self.contract.kind == "dataframe":
            self._inputs = checks.column_specs(self.contract.inputs)
            self._outputs = checks.column_specs(self.contract.outputs)
        else:
            self._tensor_inputs = checks.tensor_specs(self.contract.inputs)
            self._tensor_outputs = checks.tensor_specs(self.contract.outputs)

    @property
    def name(self) -> str:
        """The served model's name."""
        return self.contract.name

    @property
    def version(self) -> str:
        """The served model's version."""
        return self.contract.version

    def predict(self, data: pd.DataFrame | Mapping[str, Any], *,
                timeout: float | None = None) -> Any:
        """Score ``data`` on the server.

        Args:
            data: for a dataframe model, a DataFrame with the spec's input columns (any order;
                a nullable one may be left out), or column name -> values; for a tensor
                model, input name -> array.
            timeout: seconds for this call (default: the client's).

        Returns:
            A DataFrame of the spec's outputs (one row per input row, spec dtypes), or output
            name -> array for a tensor model.

        Raises:
            ClientError: the input breaks the contract (checked here, before sending), or the
                server refused the call (``code`` says how).
        """
        try:
            request = self._encode(data)
        except checks.ContractError as exc:
            raise ClientError(f"the input does not match {self.name}'s spec: {exc}") from None
        try:
            reply = self._predict(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise ClientError(f"Predict failed: {exc.code().name}: {exc.details()}",
                              exc.code().name) from None
        try:
            return self._decode(reply)
        except checks.ContractError as exc:
            raise ClientError(f"{self.name}'s reply does not match its spec: {exc}") from None

    def _encode(self, data: pd.DataFrame | Mapping[str, Any]) -> Any:
        if self.contract.kind == "dataframe":
            if isinstance(data, pd.DataFrame):
                columns = {str(c): data[c].to_numpy() for c in data.columns}
            elif isinstance(data, Mapping):
                columns = {str(name): values for name, values in data.items()}
            else:
                raise ClientError(f"{self.name} is a dataframe model: pass a pandas DataFrame"
                                  f" (or column name -> values), not {type(data).__name__}")
            frame = checks.conform_columns(columns, self._inputs)
            return codecs.typed_from_frame(self._request(), frame, self._inputs)
        if isinstance(data, pd.DataFrame) or not isinstance(data, Mapping):
            raise ClientError(f"{self.name} is a tensor model: pass a mapping of input name to"
                              f" numpy array, not {type(data).__name__}")
        tensors = checks.conform_tensors({k: np.asarray(v) for k, v in data.items()},
                                         self._tensor_inputs)
        return codecs.typed_from_tensors(self._request(), tensors, self._tensor_inputs)

    def _decode(self, reply: Any) -> Any:
        if self.contract.kind == "dataframe":
            return checks.conform_columns(codecs.columns_from_typed(reply, self._outputs),
                                          self._outputs)
        return dict(codecs.tensors_from_typed(reply, self._tensor_outputs))

    def close(self) -> None:
        """Close the channel (calls in flight are cancelled)."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pymlc.Client {self.target} {self.name} {self.version}>"


def _grpc_target(target: str | Path) -> str:
    text = str(target)
    if isinstance(target, Path) or text.startswith(("/", "./", "../")):
        return f"unix:{Path(text).resolve()}"
    return text


def _contract_of_spec(spec: Path) -> Contract:
    from .compiler.pipeline import SPEC_FILE, compile_spec

    compiled = compile_spec(spec / SPEC_FILE if spec.is_dir() else spec)
    name = compiled.plan.layout.model_config
    text = next(a.content for a in compiled.artifacts if a.path == name)
    return Contract.of(ModelConfig.from_json(text, compiled.spec_path.parent / name))


def _discover(target: str) -> Contract:
    """The contract the server sends with ``ModelMetadata`` (see ``runtime_stub.discovery``)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=oip_pb.ModelMetadataRequest.SerializeToString,
            response_deserializer=oip_pb.ModelMetadataResponse.FromString)
        try:
            _reply, state = call.with_call(oip_pb.ModelMetadataRequest(),
                                           timeout=_DISCOVERY_TIMEOUT)
        except grpc.RpcError as exc:
            raise ClientError(f"cannot reach a model server at {target}: {exc.code().name}:"
                              f" {exc.details()}", exc.code().name) from None
    found = [value for key, value in state.trailing_metadata() or () if key == CONTRACT_KEY]
    if not found:
        raise ClientError(f"the server at {target} does not send a pymlc contract (another"
                          " server, or an older pymlc): pass spec= to Client")
    try:
        return parse_contract(found[0] if isinstance(found[0], bytes) else found[0].encode())
    except ValueError as exc:
        raise ClientError(f"{target}: {exc}") from None


def _messages(channel: grpc.Channel, service: str, target: str) -> tuple[Any, Any]:
    """``PredictRequest`` and ``PredictResponse`` classes, from the server's reflection."""
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    try:
        method = pool.FindServiceByName(service).FindMethodByName("Predict")
    except grpc.RpcError as exc:
        raise ClientError(f"cannot reach a model server at {target}: {exc.code().name}:"
                          f" {exc.details()}", exc.code().name) from None
    except KeyError as exc:
        raise ClientError(f"the server at {target} does not describe {service} through"
                          f" reflection ({exc}); is it this model's server?") from None
    return (message_factory.GetMessageClass(method.input_type),
            message_factory.GetMessageClass(method.output_type))
