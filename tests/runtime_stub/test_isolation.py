"""The runtime is self-contained (STYLE §5): it imports nothing from the compiler, only the
allowlisted third-party packages, and only relative imports of itself, so that it runs when
copied under any package name into an image.

Two checks: a copy under another name imports in an isolated interpreter that cannot see this
repository (nor jinja2, pydantic, PyYAML or rich); and an AST pass over every module rejects
any import outside the allowlist.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "pymlc" / "runtime_stub"
ALLOWED = frozenset({"numpy", "pandas", "pyarrow", "grpc", "grpc_health", "grpc_reflection",
                     "google.protobuf", "pyspark"})
ALLOWED_STDLIB = frozenset(sys.stdlib_module_names)
# Compiler-side packages: the runtime must work in an image where none of them is installed.
COMPILER_ONLY = ("pymlc", "jinja2", "pydantic", "yaml", "rich", "grpc_tools")


def _modules(package: Path) -> list[str]:
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[-1] == "__main__":
            continue  # running it is the point of __main__; importing it would start a server
        names.append(".".join(parts))
    return names


_PROBE = """
import importlib, importlib.abc, json, sys
repo, site, package, modules = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
blocked = sys.argv[5:]
# The repository is on sys.path through the editable install; the venv inside it stays.
sys.path[:] = [site] + [p for p in sys.path if not (p + "/").startswith(repo + "/")
                        or (p + "/").startswith(sys.prefix + "/")]

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"the runtime imported {name!r}")
        return None

sys.meta_path.insert(0, Block())
for module in modules:
    importlib.import_module(".".join(filter(None, [package, module])))
contracts = importlib.import_module(package + ".contracts")

class Echo(contracts.DataFrameModel):
    def __init__(self, artifacts):
        self.artifacts = artifacts
    def predict(self, df):
        return df

print(json.dumps({
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in blocked),
    "contract": Echo("x").artifacts,
    "file": importlib.import_module(package).__file__,
    "repo_on_path": [p for p in sys.path if (p + "/").startswith(repo + "/")
                     and not (p + "/").startswith(sys.prefix + "/")],
}))
"""


def test_a_renamed_copy_imports_without_the_repo_or_the_compiler(tmp_path: Path) -> None:
    copy = tmp_path / "site" / "vendored_pyml_runtime"
    shutil.copytree(RUNTIME, copy, ignore=shutil.ignore_patterns("__pycache__"))
    modules = _modules(copy)
    assert {"", "contracts", "types", "deps"} <= set(modules)
    result = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(ROOT), str(copy.parent), copy.name,
         json.dumps(modules), *COMPILER_ONLY],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {"loaded": [], "contract": "x", "file": str(copy / "__init__.py"),
                     "repo_on_path": []}


def test_the_probe_would_notice_a_compiler_import(tmp_path: Path) -> None:
    copy = tmp_path / "leaky_runtime"
    shutil.copytree(RUNTIME, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "leak.py").write_text("import pymlc.compiler.pipeline\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, str(ROOT), str(tmp_path), copy.name,
         json.dumps(["leak"]), *COMPILER_ONLY],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "the runtime imported 'pymlc'" in result.stderr


# --- static check -----------------------------------------------------------------------------

def _violations(source: str, depth: int) -> Iterator[str]:
    """Imports a runtime module at ``depth`` folders below the package root may not make."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level > depth + 1:
                yield f"line {node.lineno}: relative import leaves the runtime package"
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.split(".")[0] == "pymlc":
                yield f"line {node.lineno}: absolute import of {name} (use a relative import)"
            elif not _allowed(name):
                yield f"line {node.lineno}: {name} is not stdlib or allowlisted"


def _allowed(name: str) -> bool:
    top = name.split(".")[0]
    return top in ALLOWED_STDLIB or any(name == a or name.startswith(a + ".") for a in ALLOWED)


@pytest.mark.parametrize("path", sorted(RUNTIME.rglob("*.py")),
                         ids=lambda p: p.relative_to(RUNTIME).as_posix())
def test_runtime_module_imports_only_allowlisted_packages(path: Path) -> None:
    depth = len(path.relative_to(RUNTIME).parent.parts)
    problems = list(_violations(path.read_text(encoding="utf-8"), depth))
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_the_static_check_rejects_what_it_should() -> None:
    source = "\n".join([
        "import os, json",
        "import numpy as np",
        "from google.protobuf import message",
        "from . import types",
        "from .types import COLUMN_TYPES",
        "import pymlc.runtime_stub.types",
        "from pymlc.compiler import pipeline",
        "import jinja2",
        "from google.cloud import storage",
        "from .. import compiler",
        "def f():",
        "    import pydantic",
    ])
    assert list(_violations(source, 0)) == [
        "line 6: absolute import of pymlc.runtime_stub.types (use a relative import)",
        "line 7: absolute import of pymlc.compiler (use a relative import)",
        "line 8: jinja2 is not stdlib or allowlisted",
        "line 9: google.cloud is not stdlib or allowlisted",
        "line 10: relative import leaves the runtime package",
        "line 12: pydantic is not stdlib or allowlisted",
    ]
    assert list(_violations("from .. import codecs", 1)) == []
