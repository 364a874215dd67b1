"""Import the user's model class and construct it once, with its artifacts folder."""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any, cast

from .config import ModelConfig
from .contracts import DataFrameModel, TensorModel

__all__ = ["ModelLoadError", "load_model"]

_BASES: dict[str, type] = {"dataframe": DataFrameModel, "tensor": TensorModel}


# Every model root this process loaded a model from (a reused Spark worker scores many models).
_ROOTS: set[str] = set()
# Installed packages (a virtualenv may live inside a model's folder) are never dropped.
_INSTALLED = re.compile(r"[/\\](?:site|dist)-packages[/\\]")


def _isolate(root: str) -> None:
    """Make ``import`` find this root's modules, not another model's of the same name.

    Two models whose modules share a name (``model``, ``features``) would otherwise get the
    first one's module from ``sys.modules``. Modules loaded from another model root are
    dropped from ``sys.modules`` (models already built keep theirs: their classes hold them)
    and this root goes first on ``sys.path``. Module names stay as the author wrote them, so
    pickled artifacts that name ``model.SomeClass`` load as before.
    """
    others = [os.path.join(r, "") for r in _ROOTS if r != root]
    if others:
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            if where.startswith(tuple(others)) and not _INSTALLED.search(where):
                del sys.modules[name]
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    _ROOTS.add(root)
    importlib.invalidate_caches()


class ModelLoadError(Exception):
    """The model could not be imported or constructed; the message says why."""


def load_model(config: ModelConfig, model_root: Path) -> DataFrameModel | TensorModel:
    """Import ``config.module`` from ``model_root`` and construct ``config.class_name``.

    Raises:
        ModelLoadError: import failed, the class is missing or of the wrong kind, or its
            constructor raised.
    """
    root = str(Path(model_root).resolve())
    _isolate(root)
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
