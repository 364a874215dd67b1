"""``pymlc init``: a new model folder that validates and builds as it is."""

from __future__ import annotations

import re
from pathlib import Path

from .emit.base import render
from .errors import Diagnostic, Level, SpecError
from .spec import NAME_PATTERN

__all__ = ["scaffold"]

# file in the new folder -> template under templates/init/
_FILES = {
    "pyml.yaml": "init/pyml.yaml.jinja",
    "model.py": "init/model.py.jinja",
    "examples/input.json": "init/input.json.jinja",
    "examples/output.json": "init/output.json.jinja",
}
_STATIC = {
    "requirements.txt": "numpy\npandas\n",
    "artifacts/params.json": '{"scale": 2.0}\n',
}


def scaffold(folder: Path, name: str, kind: str) -> list[Path]:
    """Create ``folder`` with a working model of ``kind``.

    Raises:
        SpecError: the name is invalid or the folder already has files.
    """
    if not re.match(NAME_PATTERN, name) or len(name) > 63:
        raise SpecError([Diagnostic(name, (), None, Level.ERROR, "E106", f"model name {name!r}"
                                    " must be lowercase letters, digits and '-', starting with a"
                                    " letter (e.g. 'fare-estimator')")])
    if folder.exists() and any(folder.iterdir()):
        raise SpecError([Diagnostic(str(folder), (), None, Level.ERROR, "E008",
                                    "folder exists and is not empty; choose a new name")])
    class_name = "".join(p.capitalize() for p in name.split("-")) + "Model"
    contents = {path: render(t, name=name, kind=kind, class_name=class_name)
                for path, t in _FILES.items()}
    contents.update(_STATIC)
    created = []
    for relative, text in sorted(contents.items()):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        created.append(target)
    return created
