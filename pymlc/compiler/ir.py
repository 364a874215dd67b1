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
    """The model's images. Each target (``serving``, ``batch``) is tagged twice: with the
    version (``tag``, reused by every build of that version) and with ``spec_tag`` (one per
    spec hash); the batch image's tags end in ``-batch``.
    """

    base: str
    repository: str
    tag: str
    spec_tag: str
    runtime_requirements: tuple[str, ...]
    batch_requirements: tuple[str, ...]

    def tags(self, target: str) -> tuple[str, str]:
        """The version reference and the spec reference of ``target``'s image."""
        suffix = "-batch" if target == "batch" else ""
        return (f"{self.repository}:{self.tag}{suffix}",
                f"{self.repository}:{self.spec_tag}{suffix}")

    @property
    def reference(self) -> str:
        """The serving image by version: what ``serving.yaml`` and the routes name."""
        return self.tags("serving")[0]

    @property
    def batch_reference(self) -> str:
        """The batch image by version: what ``spark-submit.conf`` names."""
        return self.tags("batch")[0]


@dataclass(frozen=True)
class LayoutPlan:
    """Where things live inside the model's images, as whom they run, and the names of the
    generated files the images and the Spark job refer to."""

    root: str
    uid: int
    model_config: str
    batch_job: str

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def python(self) -> str:
        return f"{self.venv}/bin/python"

    @property
    def lib(self) -> str:
        """Holds the runtime (``pymlc``), apart from the model's own dependencies."""
        return f"{self.root}/lib"

    @property
    def model(self) -> str:
        """The spec's folder, as it ships (``PYML_MODEL_ROOT``)."""
        return f"{self.root}/model"

    @property
    def generated(self) -> str:
        return f"{self.root}/generated"

    @property
    def model_config_path(self) -> str:
        return f"{self.generated}/{self.model_config}"

    @property
    def batch_job_path(self) -> str:
        return f"{self.generated}/{self.batch_job}"


@dataclass(frozen=True)
class NamesPlan:
    """Names derived from the model's name and major version."""

    proto_package: str
    module: str
    service: str
    proto_path: str

    @property
    def full_service(self) -> str:
        """The typed service's full name, as gRPC and reflection name it."""
        return f"{self.proto_package}.{self.service}"


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
    layout: LayoutPlan
    proto: str  # the rendered .proto: written by one emitter, compiled by another
