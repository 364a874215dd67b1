"""The Open Inference Protocol v2 gRPC API (``inference.GRPCInferenceService``).

``grpc_predict_v2.proto`` is KServe's public definition; the ``_pb2`` modules beside it are
compiled by ``scripts/compile-oip`` with the pinned grpcio-tools and import each other relatively.
"""

__all__: list[str] = []
