"""``pymlc schema``: the JSON Schema of ``pyml.yaml``, for editors (yaml-language-server).

Derived from the pydantic spec model, so it never drifts from what ``validate`` accepts; the
type names and dtypes are added as enums so editors can complete them.
"""

from __future__ import annotations

from typing import Any

from ..runtime_stub.types import COLUMN_TYPES, TENSOR_DTYPES
from .spec import Spec

__all__ = ["spec_json_schema"]


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pyml.yaml"
    field = schema["$defs"]["FieldSpec"]["properties"]
    field["type"] = {"anyOf": [{"enum": list(COLUMN_TYPES)}, {"type": "null"}],
                     "description": "column type (dataframe models)"}
    field["dtype"] = {"anyOf": [{"enum": list(TENSOR_DTYPES)}, {"type": "null"}],
                      "description": "tensor dtype (tensor models)"}
    return schema
