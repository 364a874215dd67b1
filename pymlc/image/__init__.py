"""The image backend of ``pymlc image``: a build context from a fresh compile and the part of
the spec's folder that ships (``context``), built for real through the Docker engine (the
``docker`` SDK, classic builder) with progress streamed (``build``); then the model loaded once
in the image (``loadcheck``), hardened as every model container pymlc starts (``hardening``).

Host-side only, like the compiler: nothing here is copied into images.
"""

from __future__ import annotations

from .build import (
    TARGETS,
    BuildError,
    BuildProgress,
    BuiltImage,
    EngineUnavailableError,
    ImageError,
    Step,
    build_image,
    connect,
    image_tags,
)
from .context import RUNTIME_PARTS, assemble_context, left_out_note, model_files

__all__ = [
    "RUNTIME_PARTS",
    "TARGETS",
    "BuildError",
    "BuildProgress",
    "BuiltImage",
    "EngineUnavailableError",
    "ImageError",
    "Step",
    "assemble_context",
    "build_image",
    "connect",
    "image_tags",
    "left_out_note",
    "model_files",
]
