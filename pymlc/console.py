"""Terminal output: diagnostics and progress for people (rich, on stderr), JSON for machines."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from .compiler.errors import MAX_PRINTED, Diagnostic, Level

__all__ = ["emit_json", "err", "print_diagnostics", "say", "shown"]

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)  # user text verbatim


def shown(path: str | os.PathLike[str]) -> str:
    """A path as people want to read it: relative below the working folder, else absolute
    (never ``../../..``, whose meaning depends on where the command ran)."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == ".." or relative.startswith("../") else relative


def say(message: str) -> None:
    """A progress or result line for people, on stderr (stdout stays for data)."""
    err.print(message)


def print_diagnostics(diagnostics: Sequence[Diagnostic], *, limit: int = MAX_PRINTED) -> None:
    for d in diagnostics[:limit]:
        style = "red" if d.level is Level.ERROR else "yellow"
        err.print(f"[{style}]{escape(str(d))}[/{style}]")
    if len(diagnostics) > limit:
        err.print(f"... and {len(diagnostics) - limit} more")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
