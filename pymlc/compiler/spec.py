"""Stage 2a, the spec model: pydantic v2 classes mirroring ``pyml.yaml`` key for key.

Fields whose absence matters are ``X | None``; defaults are filled later, in ``lower.py``.
Unknown keys are errors. Field validators check single values (type names, semver, paths
syntax); rules that relate several fields live in ``validate.py``.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ..runtime_stub.types import COLUMN_TYPES, TENSOR_DTYPES

__all__ = [
    "FORMAT_VERSION",
    "NAME_PATTERN",
    "BatchSpec",
    "ExamplesSpec",
    "FieldSpec",
    "ImageSpec",
    "ModelSpec",
    "ServingSpec",
    "Spec",
    "ToleranceSpec",
]

FORMAT_VERSION = 1
# Lowercase, and not ending in "-": Docker repositories and DNS labels refuse a trailing dash.
NAME_PATTERN = r"^[a-z]([a-z0-9-]*[a-z0-9])?$"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
_ENTRYPOINT = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
_PYTHON = re.compile(r"^3\.(1[0-9]|[89])$")
_IMAGE_REF = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_SOCKET = re.compile(r"^/[A-Za-z0-9._/-]+$")
_FREE_TEXT_MAX = 2000


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _suggest(value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; choose one of: {', '.join(choices)}"


def _column_type(value: str) -> str:
    if value not in COLUMN_TYPES:
        raise _fail("pyml_type", f"unknown type {value!r}{_suggest(value, list(COLUMN_TYPES))}")
    return value


def _tensor_dtype(value: str) -> str:
    if value not in TENSOR_DTYPES:
        raise _fail("pyml_dtype", f"unknown dtype {value!r}{_suggest(value, list(TENSOR_DTYPES))}")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value) or len(value) > 64:
        raise _fail("pyml_identifier", f"{value!r} is not a valid field name; use letters, digits"
                    " and '_', starting with a letter or '_', at most 64 characters")
    if value.startswith("__") or value.lower() in _RESERVED_WORDS:
        raise _fail("pyml_identifier", f"{value!r} is reserved; choose another name")
    return value


# Words that would clash with generated Python/proto code, or with the OIP envelope.
_RESERVED_WORDS = frozenset({
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
    "else", "except", "false", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "none", "nonlocal", "not", "or", "pass", "raise", "return", "true", "try",
    "while", "with", "yield", "syntax", "package", "option", "message", "service", "rpc",
    "returns", "reserved", "descriptor",
})


def _semver(value: str) -> str:
    if not _SEMVER.match(value):
        raise _fail("pyml_semver", f"{value!r} is not a semantic version; write MAJOR.MINOR.PATCH,"
                    " e.g. \"1.4.0\" (quoted)")
    return value


def _relative_path(value: str) -> str:
    if value.startswith("/"):
        raise _fail("pyml_path", f"absolute path {value!r}: files must be inside the spec's"
                    " folder; use a path relative to the folder of pyml.yaml")
    if ".." in value.rstrip("/").split("/"):
        raise _fail("pyml_path", f"path {value!r} leaves the spec's folder through '..'; use a"
                    " path inside the folder of pyml.yaml")
    if not _PATH.match(value):
        raise _fail("pyml_path", f"path {value!r} has unsupported characters; use letters, digits,"
                    " '.', '_', '-' and '/'")
    return value


def _entrypoint(value: str) -> str:
    if not _ENTRYPOINT.match(value):
        raise _fail("pyml_entrypoint", f"{value!r} is not 'module:Class'; e.g. model:FareModel")
    return value


def _python(value: str) -> str:
    if not _PYTHON.match(value):
        raise _fail("pyml_python", f"unsupported Python version {value!r}; write e.g. \"3.11\"")
    return value


def _image_ref(value: str) -> str:
    if not _IMAGE_REF.match(value):
        raise _fail("pyml_image", f"{value!r} is not an image reference like python:3.11-slim")
    return value


def _repository(value: str) -> str:
    if not _REPOSITORY.match(value):
        raise _fail("pyml_image", f"{value!r} is not a repository like registry.example.com/ml/x")
    return value


def _socket(value: str) -> str:
    if not _SOCKET.match(value) or ".." in value.split("/") or len(value) > 100:
        raise _fail("pyml_socket", f"{value!r} is not an absolute socket path of at most 100"
                    " characters using letters, digits, '.', '_', '-', '/'")
    return value


# Control characters (but tab, newline and carriage return), lone surrogates, and the
# bidirectional overrides that make text read differently from what it is ("Trojan Source").
_FORBIDDEN_TEXT = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)


def _free_text(value: str) -> str:
    if len(value) > _FREE_TEXT_MAX:
        raise _fail("pyml_text", f"text is longer than {_FREE_TEXT_MAX} characters; shorten it")
    bad = _FORBIDDEN_TEXT.search(value)
    if bad:
        raise _fail("pyml_text", f"text contains the control character U+{ord(bad.group()):04X}"
                    f" at offset {bad.start()}; remove it (plain text, tabs and line breaks only)")
    return value


ColumnTypeName = Annotated[str, AfterValidator(_column_type)]
TensorDtypeName = Annotated[str, AfterValidator(_tensor_dtype)]
Identifier = Annotated[str, AfterValidator(_identifier)]
SemVer = Annotated[str, AfterValidator(_semver)]
RelPath = Annotated[str, AfterValidator(_relative_path)]
FreeText = Annotated[str, AfterValidator(_free_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FieldSpec(_Strict):
    """One input or output: a dataframe column (``type``) or a tensor (``dtype``, ``shape``)."""

    name: Identifier
    type: ColumnTypeName | None = None
    nullable: bool | None = None
    dtype: TensorDtypeName | None = None
    shape: list[int] | None = None
    description: FreeText | None = None


class ModelSpec(_Strict):
    kind: Literal["dataframe", "tensor"]
    entrypoint: Annotated[str, AfterValidator(_entrypoint)]
    artifacts: RelPath | None = None
    requirements: RelPath | None = None
    setup: RelPath | None = None
    python: Annotated[str, AfterValidator(_python)] | None = None


class ToleranceSpec(_Strict):
    rtol: float = Field(default=1e-6, ge=0)
    atol: float = Field(default=0.0, ge=0)


class ExamplesSpec(_Strict):
    input: RelPath
    output: RelPath | None = None
    tolerance: ToleranceSpec | None = None


class ServingSpec(_Strict):
    socket: Annotated[str, AfterValidator(_socket)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    max_message_bytes: Annotated[int, Field(ge=1024, le=2**31 - 1)] | None = None
    timeout_ms: Annotated[int, Field(ge=1, le=3_600_000)] | None = None
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] | None = None
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    cpus: Annotated[float, Field(gt=0, le=256)] | None = None
    memory_mb: Annotated[int, Field(ge=64, le=1_048_576)] | None = None
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None


class BatchSpec(_Strict):
    passthrough: list[Identifier] | None = None
    rows_per_batch: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    write_mode: Literal["overwrite", "append"] | None = None


class ImageSpec(_Strict):
    base: Annotated[str, AfterValidator(_image_ref)] | None = None
    repository: Annotated[str, AfterValidator(_repository)] | None = None


class Spec(_Strict):
    """The whole ``pyml.yaml`` (format version 1)."""

    pyml: Literal[1]
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
    version: SemVer
    description: FreeText | None = None
    model: ModelSpec
    inputs: Annotated[list[FieldSpec], Field(min_length=1)]
    outputs: Annotated[list[FieldSpec], Field(min_length=1)]
    examples: ExamplesSpec | None = None
    serving: ServingSpec | None = None
    batch: BatchSpec | None = None
    image: ImageSpec | None = None
