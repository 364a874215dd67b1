"""What a client learns from a running model server: the model's exact contract.

Open Inference Protocol metadata names each input's datatype, but not everything the spec says:
a ``date`` column travels as ``INT32`` and a ``timestamp`` as ``INT64``, and OIP has no word for
a column's nullability. So the server also sends the contract itself, as JSON in the trailing
metadata of every ``ModelMetadata`` answer (key ``pyml-contract-bin``). OIP clients ignore it;
``pymlc.Client`` reads it, so that a client given only an address decodes replies into exactly
the dtypes the spec declares. Both ends use this module, so the format has one definition.
"""

from __future__ import annotations

import json
from typing import Any

from .config import FieldConfig, ModelConfig

__all__ = ["CONTRACT_KEY", "Contract", "contract_bytes", "parse_contract"]

CONTRACT_KEY = "pyml-contract-bin"  # "-bin": gRPC carries the value as raw bytes
_FORMAT = 1


class Contract:
    """The part of ``model.json`` a client needs: names, kind, fields and the typed service.

    Attributes:
        name, version, kind: the model's (``kind`` is ``dataframe`` or ``tensor``).
        inputs, outputs: the spec's fields, in spec order.
        service: the typed service's full name (``package.Service``).
        max_message_bytes: the server's message size limit.
    """

    def __init__(self, name: str, version: str, kind: str, inputs: tuple[FieldConfig, ...],
                 outputs: tuple[FieldConfig, ...], service: str,
                 max_message_bytes: int) -> None:
        self.name, self.version, self.kind = name, version, kind
        self.inputs, self.outputs = inputs, outputs
        self.service = service
        self.max_message_bytes = max_message_bytes

    @classmethod
    def of(cls, config: ModelConfig) -> Contract:
        """The contract of a loaded ``model.json``."""
        return cls(config.name, config.version, config.kind, config.inputs, config.outputs,
                   config.full_service,
                   config.serving.max_message_bytes)


def contract_bytes(config: ModelConfig) -> bytes:
    """The metadata value the server sends: the contract as compact, sorted JSON."""
    contract = Contract.of(config)
    data = {
        "format": _FORMAT,
        "name": contract.name,
        "version": contract.version,
        "kind": contract.kind,
        "inputs": [_field(f) for f in contract.inputs],
        "outputs": [_field(f) for f in contract.outputs],
        "service": contract.service,
        "max_message_bytes": contract.max_message_bytes,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def parse_contract(value: bytes) -> Contract:
    """Read the metadata value back.

    Raises:
        ValueError: the value is not a contract of this format (another server, or a newer
            pymlc: the message says so).
    """
    try:
        data = json.loads(value)
        found = data.get("format")
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"the server's contract metadata is unreadable ({exc})") from None
    if found != _FORMAT:
        raise ValueError(f"contract format {found!r}, expected {_FORMAT}: the server runs"
                         " another pymlc version; pass spec= instead")
    try:
        return Contract(data["name"], data["version"], data["kind"],
                        tuple(_read_field(f) for f in data["inputs"]),
                        tuple(_read_field(f) for f in data["outputs"]),
                        data["service"], int(data["max_message_bytes"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"the server's contract metadata is unreadable ({exc})") from None


def _field(field: FieldConfig) -> dict[str, Any]:
    return {"name": field.name, "number": field.number, "type": field.type,
            "nullable": field.nullable,
            "shape": list(field.shape) if field.shape is not None else None}


def _read_field(data: dict[str, Any]) -> FieldConfig:
    shape = data["shape"]
    return FieldConfig(str(data["name"]), int(data["number"]), str(data["type"]),
                       bool(data["nullable"]), tuple(int(d) for d in shape)
                       if shape is not None else None)
