"""Load the model once and exit: ``python -m pymlc.runtime_stub.loadcheck``.

``pymlc image`` runs this in the image it has just built, hardened as the image is served, to
prove that the model loads there (every import it makes, every shared library it opens, its
artifacts). It imports and constructs the model exactly as the server does before it reports
ready, and serves nothing. Exit 0 with ``pymlc: loaded NAME VERSION in S s`` on stderr, else 1
with the error's traceback and, last, ``pymlc: error: ...``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Sequence

from .config import ConfigError, ModelConfig, model_root_from_env
from .loader import ModelLoadError, load_model

__all__ = ["main"]

_RUNTIME = os.path.dirname(os.path.abspath(__file__)) + os.sep


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model named by ``PYML_MODEL_CONFIG`` and ``PYML_MODEL_ROOT``.

    Args:
        argv: unused (no options); accepted so that the image's CMD may pass any.

    Returns:
        0 if the model loaded, 1 otherwise.
    """
    started = time.monotonic()
    try:
        config = ModelConfig.from_env()
        load_model(config, model_root_from_env())
    except (ConfigError, ModelLoadError) as exc:
        if exc.__cause__ is not None:
            print(_traceback(exc.__cause__), file=sys.stderr, end="")
        print(f"pymlc: error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"pymlc: loaded {config.name} {config.version} in"
          f" {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


def _traceback(error: BaseException) -> str:
    """The error's traceback without the frames of the runtime and of importlib: what is left
    is the model's code and the packages it calls."""
    shown = traceback.TracebackException.from_exception(error)
    shown.stack = traceback.StackSummary.from_list(
        [frame for frame in shown.stack if not _internal(frame.filename)])
    return "".join(shown.format())


def _internal(filename: str) -> bool:
    return (filename.startswith("<frozen ") or filename.startswith(_RUNTIME)
            or os.sep + "importlib" + os.sep in filename)


if __name__ == "__main__":
    sys.exit(main())
