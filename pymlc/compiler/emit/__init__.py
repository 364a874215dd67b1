"""Emitters: one per artifact kind, each a pure function ``BuildPlan -> list[Artifact]``.

``EMITTERS`` is the single registry; the pipeline runs every entry, then adds the manifest.
"""

from __future__ import annotations

from .base import Artifact, Emitter
from .dockerfile import emit_dockerfile
from .grpc_stubs import emit_grpc_stubs
from .kubernetes import emit_kubernetes
from .manifest import MANIFEST, emit_manifest
from .model_config import emit_model_config
from .proto import emit_proto
from .schema_json import emit_schema_json
from .serving_config import emit_serving_config
from .spark_conf import emit_spark_conf
from .spark_job import emit_spark_job

__all__ = ["EMITTERS", "MANIFEST", "Artifact", "Emitter", "emit_manifest"]

EMITTERS: dict[str, Emitter] = {
    "dockerfile": emit_dockerfile,
    "grpc_stubs": emit_grpc_stubs,
    "kubernetes": emit_kubernetes,
    "model_config": emit_model_config,
    "proto": emit_proto,
    "schema_json": emit_schema_json,
    "serving_config": emit_serving_config,
    "spark_conf": emit_spark_conf,
    "spark_job": emit_spark_job,
}
