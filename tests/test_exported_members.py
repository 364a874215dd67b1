"""The public API is explicit (httpx ``test_exported_members.py``): ``pymlc.__all__`` is sorted
and lists exactly the package's public members, and every public module declares an
``__all__`` whose names exist."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import pymlc

PACKAGE = Path(pymlc.__file__).resolve().parent
# Present in every module that uses `from __future__ import annotations`; not an export.
_FUTURE = {"annotations"}
GENERATED = re.compile(r"_pb2(_grpc)?$")


def _public_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "templates" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        # protoc's output is generated code: exempt, like it is from the golden files
        if not any(part.startswith("_") for part in parts) and not GENERATED.search(parts[-1]):
            names.append(".".join(parts))
    return names


def test_package_all_is_sorted_and_complete() -> None:
    members = sorted(name for name, value in vars(pymlc).items()
                     if (not name.startswith("_") or name == "__version__")
                     and not isinstance(value, types.ModuleType) and name not in _FUTURE
                     and name != "typing")
    members = sorted([*members, *pymlc._LAZY])  # the API and client load on first use
    assert pymlc.__all__ == sorted(pymlc.__all__)
    assert pymlc.__all__ == members
    assert {"DataFrameModel", "TensorModel", "__version__"} <= set(pymlc.__all__)


def test_public_modules_are_found() -> None:
    modules = _public_modules()
    for expected in ("pymlc", "pymlc.cli", "pymlc.compiler.pipeline", "pymlc.compiler.emit",
                     "pymlc.compiler.emit.base", "pymlc.runtime_stub.contracts"):
        assert expected in modules
    assert "pymlc.__main__" not in modules and "pymlc._version" not in modules


@pytest.mark.parametrize("name", _public_modules())
def test_module_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__ list"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [member for member in exported if not hasattr(module, member)]
    assert not missing, f"{name}.__all__ names missing members: {missing}"


def test_importing_the_contract_does_not_import_the_compiler() -> None:
    probe = ("import sys, pymlc; from pymlc import DataFrameModel, TensorModel; "
             "print(sorted(m for m in sys.modules if m.startswith(('pymlc.compiler', 'jinja2', "
             "'pydantic', 'yaml', 'rich', 'grpc_tools'))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
