"""``pymlc verify``: the spec's examples in-process, through the serving container over its Unix
socket, and through the batch container's Spark job, side by side; any difference beyond the
spec's tolerance is a failure.

Host-side only, like the compiler and ``pymlc.image`` (whose builder it uses): nothing here is
copied into images.
"""

from __future__ import annotations

from .containers import LABEL, ContainerRun
from .examples import Examples, ExamplesError, load_examples
from .paths import PathResult
from .report import Report, Row, compare, format_value
from .run import DEFAULT_TIMEOUT, PATHS, verify

__all__ = [
    "DEFAULT_TIMEOUT",
    "LABEL",
    "PATHS",
    "ContainerRun",
    "Examples",
    "ExamplesError",
    "PathResult",
    "Report",
    "Row",
    "compare",
    "format_value",
    "load_examples",
    "verify",
]
