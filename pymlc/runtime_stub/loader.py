"""Import the user's model class and construct it once, with its artifacts folder."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, cast

from .config import ModelConfig
from .contracts import DataFrameModel, TensorModel

__all__ = ["ModelLoadError", "load_model"]

_BASES: dict[str, type] = {"dataframe": DataFrameModel, "tensor": TensorModel}


class ModelLoadError(Exception):
    """The model could not be imported or constructed; the message says why."""


def load_model(config: ModelConfig, model_root: Path) -> DataFrameModel | TensorModel:
    """Import ``config.module`` from ``model_root`` and construct ``config.class_name``.

    Raises:
        ModelLoadError: import failed, the class is missing or of the wrong kind, or its
            constructor raised.
    """
    root = str(Path(model_root).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(config.module)
    except Exception as exc:  # the user's module may raise anything at import
        raise ModelLoadError(f"cannot import model module {config.module!r} from {root}:"
                             f" {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, config.class_name, None)
    base = _BASES[config.kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ModelLoadError(f"{config.module}:{config.class_name} must be a class deriving from"
                             f" pymlc.{base.__name__} (model.kind is {config.kind!r})")
    artifacts = Path(root) / config.artifacts
    try:
        model: DataFrameModel | TensorModel = cast(Any, cls)(artifacts)
    except Exception as exc:
        raise ModelLoadError(f"{config.module}:{config.class_name}({artifacts}) raised"
                             f" {type(exc).__name__}: {exc}") from exc
    return model
