"""The model's resolved contract, read from the generated ``model.json``.

The compiler writes ``model.json``; the runtime reads it here and nowhere else. Inside an image
the Dockerfile sets ``PYML_MODEL_CONFIG`` (this file) and ``PYML_MODEL_ROOT`` (the spec's folder).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "ROOT_ENV",
    "BatchConfig",
    "ConfigError",
    "FieldConfig",
    "ModelConfig",
    "ServingConfig",
    "model_root_from_env",
    "tcp_address",
]

CONFIG_ENV = "PYML_MODEL_CONFIG"
ROOT_ENV = "PYML_MODEL_ROOT"
_FORMAT = 1


class ConfigError(Exception):
    """The runtime cannot find or read its configuration; the message says what to set."""


@dataclass(frozen=True)
class FieldConfig:
    """One input or output: a column (``shape is None``) or a tensor."""

    name: str
    number: int
    type: str
    nullable: bool
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class ServingConfig:
    socket: str
    port: int | None
    max_message_bytes: int
    timeout_ms: int
    max_concurrency: int
    threads: int
    cpus: float
    memory_mb: int
    metrics_port: int | None


@dataclass(frozen=True)
class BatchConfig:
    passthrough: tuple[str, ...]
    rows_per_batch: int
    write_mode: str


@dataclass(frozen=True)
class ModelConfig:
    """Everything the runtime knows about one model.

    Attributes:
        path: the ``model.json`` it was read from; its folder holds the generated stubs.
    """

    path: Path
    name: str
    version: str
    kind: str
    module: str
    class_name: str
    artifacts: str
    inputs: tuple[FieldConfig, ...]
    outputs: tuple[FieldConfig, ...]
    proto_package: str
    proto_module: str
    service: str
    serving: ServingConfig
    batch: BatchConfig
    examples: dict[str, Any] | None

    @property
    def full_service(self) -> str:
        """The typed service's full name (``package.Service``), as gRPC routes calls to it."""
        return f"{self.proto_package}.{self.service}"

    @property
    def generated_dir(self) -> Path:
        return self.path.parent

    @classmethod
    def load(cls, path: Path | str) -> ModelConfig:
        """Read ``model.json``.

        Raises:
            ConfigError: the file is missing or not a pymlc model config.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the model config {path}: {exc.strerror}; run"
                              " `pymlc build` to generate it") from None
        return cls.from_json(text, path)

    @classmethod
    def from_json(cls, text: str, path: Path | str) -> ModelConfig:
        """Read ``model.json``'s text; ``path`` is where it lives (or would be written).

        Raises:
            ConfigError: the text is not a pymlc model config.
        """
        path = Path(path)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); run `pymlc build`") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError(f"{path} is not a pymlc model config of format {_FORMAT};"
                              " rebuild it with this pymlc (`pymlc build`)")
        return cls._from_dict(path, data)

    @classmethod
    def from_env(cls) -> ModelConfig:
        """Read the config named by ``PYML_MODEL_CONFIG``."""
        value = os.environ.get(CONFIG_ENV)
        if not value:
            raise ConfigError(f"{CONFIG_ENV} is not set; set it to the generated model.json")
        return cls.load(value)

    @classmethod
    def _from_dict(cls, path: Path, data: dict[str, Any]) -> ModelConfig:
        proto = data["proto"]
        batch = data["batch"]
        return cls(
            path=path.resolve(),
            name=data["name"],
            version=data["version"],
            kind=data["kind"],
            module=data["module"],
            class_name=data["class"],
            artifacts=data["artifacts"],
            inputs=tuple(_field(f) for f in data["inputs"]),
            outputs=tuple(_field(f) for f in data["outputs"]),
            proto_package=proto["package"],
            proto_module=proto["module"],
            service=proto["service"],
            serving=ServingConfig(**data["serving"]),
            batch=BatchConfig(batch["passthrough"] and tuple(batch["passthrough"]) or (),
                              batch["rows_per_batch"], batch["write_mode"]),
            examples=data.get("examples"),
        )


def _field(data: dict[str, Any]) -> FieldConfig:
    shape = data.get("shape")
    return FieldConfig(data["name"], data["number"], data["type"], bool(data["nullable"]),
                       tuple(shape) if shape is not None else None)


def model_root_from_env() -> Path:
    """The spec's folder, from ``PYML_MODEL_ROOT``."""
    value = os.environ.get(ROOT_ENV)
    if not value:
        raise ConfigError(f"{ROOT_ENV} is not set; set it to the folder of pyml.yaml")
    return Path(value)


def tcp_address(host: str, port: int | str) -> str:
    """``HOST:PORT`` as gRPC targets and people write it: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
