"""Stage 3, lower: a validated :class:`Spec` plus the lock becomes the completed IR.

Every default lives here, in the ``DEFAULT_*`` tables, and every derived name is computed here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from ..runtime_stub.deps import BATCH_REQUIREMENTS, RUNTIME_REQUIREMENTS
from .ir import (
    BatchPlan,
    BuildPlan,
    ExamplesPlan,
    FieldPlan,
    ImagePlan,
    LayoutPlan,
    MessagePlan,
    ModelPlan,
    NamesPlan,
    ServingPlan,
)
from .lock import Lock, LockedMessage
from .proto_text import render_proto
from .spec import BatchSpec, FieldSpec, ServingSpec, Spec

__all__ = ["DEFAULT_LAYOUT", "DEFAULT_PYTHON", "DEFAULT_SERVING", "lower"]

DEFAULT_PYTHON = "3.11"
# The Python of an official-style image: [registry/][library/]python:3.X[...]
_PYTHON_TAG = re.compile(r"^(?:[^@]*/)?python:(3\.\d+)(?![\d])")
# The defaults fit together: a request of max_message_bytes costs the server up to ~18x its
# size at its peak (parsed message, decoded columns, DataFrame, response), so 16 MiB stays far
# inside memory_mb and is served within timeout_ms; 64 MiB would not (bench/README.md, serving).
DEFAULT_SERVING = ServingPlan(
    socket="/run/pyml/model.sock",
    port=None,
    max_message_bytes=16 * 1024 * 1024,
    timeout_ms=1000,
    max_concurrency=64,
    threads=4,
    cpus=1.0,
    memory_mb=1024,
    metrics_port=None,
)
# Non-root in every image; a fixed UID so that bind-mounted folders can be made writable for it.
DEFAULT_LAYOUT = LayoutPlan(root="/opt/pyml", uid=10001, model_config="model.json",
                            batch_job="batch_job.py")
# Arrow batches of 50k rows amortise the per-batch Python cost (measured: 10k is slower).
DEFAULT_BATCH = BatchPlan(passthrough=(), rows_per_batch=50_000, write_mode="overwrite")


def lower(spec: Spec, lock: Lock, *, spec_file: str, spec_sha256: str,
          pymlc_version: str) -> BuildPlan:
    """Complete the spec into a :class:`BuildPlan`; ``lock`` must already cover every field."""
    major = int(spec.version.split(".")[0])
    plan = BuildPlan(
        name=spec.name,
        version=spec.version,
        major=major,
        description=spec.description or "",
        spec_file=spec_file,
        spec_sha256=spec_sha256,
        pymlc_version=pymlc_version,
        model=_model(spec),
        inputs=_message(spec.inputs, lock.inputs),
        outputs=_message(spec.outputs, lock.outputs),
        examples=_examples(spec),
        serving=_serving(spec.serving),
        batch=_batch(spec.batch),
        image=_image(spec, spec_sha256),
        names=_names(spec.name, major),
        layout=DEFAULT_LAYOUT,
        proto="",
    )
    return replace(plan, proto=render_proto(plan))


def _model(spec: Spec) -> ModelPlan:
    module, class_name = spec.model.entrypoint.split(":")
    return ModelPlan(
        kind=spec.model.kind,
        module=module,
        class_name=class_name,
        artifacts=(spec.model.artifacts or ".").rstrip("/") or ".",
        requirements=spec.model.requirements,
        setup=spec.model.setup,
        python=_python(spec),
    )


def _python(spec: Spec) -> str:
    if spec.model.python:
        return spec.model.python
    base = spec.image.base if spec.image else None
    found = _PYTHON_TAG.match(base or "")
    return found.group(1) if found else DEFAULT_PYTHON



def _message(fields: Sequence[FieldSpec], locked: LockedMessage) -> MessagePlan:
    in_use = {f.name for f in fields}
    return MessagePlan(
        fields=tuple(_field(f, locked.number(f.name)) for f in fields),
        reserved_numbers=tuple(sorted(n for _, n in locked.reserved)),
        reserved_names=tuple(sorted({n for n, _ in locked.reserved} - in_use)),
    )


def _field(spec: FieldSpec, number: int) -> FieldPlan:
    return FieldPlan(
        name=spec.name,
        number=number,
        type=spec.type or spec.dtype or "",
        nullable=bool(spec.nullable),
        shape=tuple(spec.shape or ()),
        description=spec.description or "",
    )


def _examples(spec: Spec) -> ExamplesPlan | None:
    if spec.examples is None:
        return None
    tolerance = spec.examples.tolerance
    return ExamplesPlan(
        input=spec.examples.input,
        output=spec.examples.output,
        rtol=tolerance.rtol if tolerance else 1e-6,
        atol=tolerance.atol if tolerance else 0.0,
    )


def _serving(spec: ServingSpec | None) -> ServingPlan:
    if spec is None:
        return DEFAULT_SERVING
    given = {k: v for k, v in spec.model_dump().items() if v is not None}
    return ServingPlan(**{**DEFAULT_SERVING.__dict__, **given})


def _batch(spec: BatchSpec | None) -> BatchPlan:
    if spec is None:
        return DEFAULT_BATCH
    return BatchPlan(
        passthrough=tuple(spec.passthrough or ()),
        rows_per_batch=spec.rows_per_batch or DEFAULT_BATCH.rows_per_batch,
        write_mode=spec.write_mode or DEFAULT_BATCH.write_mode,
    )


def _image(spec: Spec, spec_sha256: str) -> ImagePlan:
    given = spec.image
    python = _python(spec)
    return ImagePlan(
        base=(given.base if given and given.base else f"python:{python}-slim"),
        repository=(given.repository if given and given.repository else spec.name),
        tag=spec.version.replace("+", "_"),
        spec_tag=f"spec-{spec_sha256[:12]}",
        runtime_requirements=RUNTIME_REQUIREMENTS,
        batch_requirements=BATCH_REQUIREMENTS,
    )


def _names(name: str, major: int) -> NamesPlan:
    snake = name.replace("-", "_")
    module = f"{snake}_v{major}"
    return NamesPlan(
        proto_package=f"pyml.{snake}.v{major}",
        module=module,
        service=_service(name),
        proto_path=f"proto/{module}.proto",
    )


# Message names of the generated proto (and its <T>Column family); a service may not share one.
_MESSAGE_NAMES = frozenset({"PredictRequest", "PredictResponse", "Tensor"})


def _service(name: str) -> str:
    camel = "".join(part.capitalize() for part in name.split("-"))
    return f"{camel}Service" if camel in _MESSAGE_NAMES or camel.endswith("Column") else camel
