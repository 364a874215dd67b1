"""The IR: a frozen, completed build plan. Emitters read nothing else.

Every default is resolved here (by ``lower.py``); nothing is "maybe" except files the user chose
not to have (``requirements``, ``setup``, example output) and the optional TCP ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime_stub.config import BatchConfig, ServingConfig

__all__ = [
    "BatchPlan",
    "BuildPlan",
    "ExamplesPlan",
    "FieldPlan",
    "ImagePlan",
    "MessagePlan",
    "ModelPlan",
    "NamesPlan",
    "ServingPlan",
]


@dataclass(frozen=True)
class FieldPlan:
    """A column (``shape == ()``) or a tensor, with its locked protobuf field number."""

    name: str
    number: int
    type: str
    nullable: bool
    shape: tuple[int, ...]
    description: str


@dataclass(frozen=True)
class MessagePlan:
    """The inputs or the outputs, in spec order, with the numbers and names retired from them."""

    fields: tuple[FieldPlan, ...]
    reserved_numbers: tuple[int, ...]
    reserved_names: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class ModelPlan:
    kind: str
    module: str
    class_name: str
    artifacts: str
    requirements: str | None
    setup: str | None
    python: str


@dataclass(frozen=True)
class ExamplesPlan:
    input: str
    output: str | None
    rtol: float
    atol: float


# The serving and batch settings are the runtime's own records: the compiler fills them and
# model.json carries them to the runtime, so each setting is declared once.
ServingPlan = ServingConfig
BatchPlan = BatchConfig


@dataclass(frozen=True)
class ImagePlan:
    base: str
    repository: str
    tag: str
    runtime_requirements: tuple[str, ...]
    batch_requirements: tuple[str, ...]


@dataclass(frozen=True)
class NamesPlan:
    """Names derived from the model's name and major version."""

    proto_package: str
    module: str
    service: str
    proto_path: str


@dataclass(frozen=True)
class BuildPlan:
    """Everything the emitters need to write one model's artifacts."""

    name: str
    version: str
    major: int
    description: str
    spec_file: str
    spec_sha256: str
    pymlc_version: str
    model: ModelPlan
    inputs: MessagePlan
    outputs: MessagePlan
    examples: ExamplesPlan | None
    serving: ServingPlan
    batch: BatchPlan
    image: ImagePlan
    names: NamesPlan
