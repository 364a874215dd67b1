"""The floor: a minimal grpcio server for the same typed method, with no checks and no extras.

Bytes in, bytes out (generic handler, identity serializers); it decodes the payload into the
same DataFrame or tensors the pymlc server gives the model, calls the same model's ``predict``
and encodes the result. No contract checks, metrics, logging, health or OIP.

Run: python raw_server.py MODEL_JSON MODEL_ROOT --socket PATH --port N
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd

from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.loader import load_model


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model_json", type=Path)
    p.add_argument("model_root", type=Path)
    p.add_argument("--socket")
    p.add_argument("--port", type=int)
    args = p.parse_args()
    config = ModelConfig.load(args.model_json)
    model = load_model(config, args.model_root)
    sys.path.insert(0, str(config.generated_dir))
    pb2 = importlib.import_module(f"{config.proto_module}_pb2")
    handle = _frame_handler(config, model, pb2) if config.kind == "dataframe" \
        else _tensor_handler(config, model, pb2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.serving.threads),
                         options=[("grpc.max_receive_message_length",
                                   config.serving.max_message_bytes)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        f"{config.proto_package}.{config.service}",
        {"Predict": grpc.unary_unary_rpc_method_handler(handle)})])
    if args.socket:
        server.add_insecure_port(f"unix:{args.socket}")
    port = server.add_insecure_port(f"127.0.0.1:{args.port}") if args.port is not None else None
    server.start()
    print(f"raw: serving on unix:{args.socket}, 127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    return 0


def _frame_handler(config: ModelConfig, model: Any, pb2: Any) -> Any:
    from pymlc.runtime_stub.types import COLUMN_TYPES

    fields = [(f.name, f.nullable, COLUMN_TYPES[f.type]) for f in config.inputs]
    outputs = [f.name for f in config.outputs]

    def handle(data: bytes, context: Any) -> bytes:
        request = pb2.PredictRequest.FromString(data)
        columns = {}
        for name, nullable, row in fields:
            field = getattr(request, name)
            values = field.values
            if row.proto_numpy == "object":
                array = np.array(list(values), dtype=object)
                if nullable and len(field.nulls):
                    array[np.fromiter(field.nulls, bool, len(field.nulls))] = None
            else:
                array = np.fromiter(values, row.proto_numpy, len(values)).astype(row.numpy)
            columns[name] = array
        result = model.predict(pd.DataFrame(columns, copy=False))
        response = pb2.PredictResponse()
        for name in outputs:
            getattr(response, name).values.extend(result[name].to_numpy().tolist())
        return bytes(response.SerializeToString())

    return handle


def _tensor_handler(config: ModelConfig, model: Any, pb2: Any) -> Any:
    from pymlc.runtime_stub.types import TENSOR_DTYPES

    inputs = [(f.name, np.dtype(TENSOR_DTYPES[f.type].numpy)) for f in config.inputs]
    outputs = [f.name for f in config.outputs]

    def handle(data: bytes, context: Any) -> bytes:
        request = pb2.PredictRequest.FromString(data)
        tensors = {}
        for name, dtype in inputs:
            tensor = getattr(request, name)
            tensors[name] = np.frombuffer(tensor.data, dtype).reshape(tuple(tensor.shape))
        result = model.predict(tensors)
        response = pb2.PredictResponse()
        for name in outputs:
            array = np.ascontiguousarray(result[name])
            getattr(response, name).shape.extend(array.shape)
            getattr(response, name).data = array.tobytes()
        return bytes(response.SerializeToString())

    return handle


if __name__ == "__main__":
    sys.exit(main())
