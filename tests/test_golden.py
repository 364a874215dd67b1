"""Golden trees: every ``specs/<case>/pyml.yaml`` compiles to exactly ``tests/golden/<case>/``.

The whole tree is compared: a missing file, an extra file or one changed byte fails with a
unified diff. ``pytest --update-golden`` (or ``scripts/golden``) rewrites the trees; review the
diff like code. The protoc stubs (``*_pb2*.py[i]``) are not golden files, since grpcio-tools
stamps its version into them: instead they are compiled here and their stamp is checked against
the runtime's pinned grpcio.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pymlc.compiler.pipeline import Compiled, compile_spec
from pymlc.runtime_stub.deps import GRPC_VERSION

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p.parent.name for p in SPECS.glob("*/pyml.yaml"))
STUB = re.compile(r"_pb2(_grpc)?\.pyi?$")


def _compile(case: str) -> Compiled:
    return compile_spec(SPECS / case / "pyml.yaml", display=f"specs/{case}/pyml.yaml")


def _golden_files(compiled: Compiled) -> dict[str, str]:
    return {a.path: a.content for a in compiled.artifacts if not STUB.search(a.path)}


def _tree(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes().decode("utf-8")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _differences(expected: dict[str, str], actual: dict[str, str], case: str) -> list[str]:
    problems = []
    for path in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing from the build (golden file {case}/{path} not generated)\n")
    for path in sorted(actual.keys() - expected.keys()):
        problems.append(f"extra: {case}/{path} is generated but has no golden file\n")
    for path in sorted(expected.keys() & actual.keys()):
        if expected[path] != actual[path]:
            problems.append("".join(difflib.unified_diff(
                expected[path].splitlines(keepends=True), actual[path].splitlines(keepends=True),
                fromfile=f"golden/{case}/{path}", tofile=f"build/{case}/{path}")))
    return problems


def _rewrite(folder: Path, files: dict[str, str]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))


@pytest.mark.parametrize("case", CASES)
def test_golden_tree(case: str, update_golden: bool) -> None:
    actual = _golden_files(_compile(case))
    if update_golden:
        _rewrite(GOLDEN / case, actual)
    problems = _differences(_tree(GOLDEN / case), actual, case)
    assert not problems, ("generated files differ from tests/golden (if intended, run "
                          "scripts/golden and review the diff):\n" + "\n".join(problems))


@pytest.mark.parametrize("case", CASES)
def test_committed_lock_is_current(case: str) -> None:
    # The lock is committed beside the spec; a build must not need to change it.
    committed = (SPECS / case / "pyml.lock").read_text(encoding="utf-8")
    assert committed == _compile(case).lock_text


@pytest.mark.parametrize("case", CASES)
def test_stubs_compile_import_and_match_the_pinned_grpcio(case: str, tmp_path: Path) -> None:
    compiled = _compile(case)
    stubs = {a.path: a.content for a in compiled.artifacts if STUB.search(a.path)}
    module = compiled.plan.names.module
    assert sorted(stubs) == sorted(f"{module}{s}" for s in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    for path, content in stubs.items():
        (tmp_path / path).write_text(content, encoding="utf-8")
    stamp = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", stubs[f"{module}_pb2_grpc.py"],
                      re.MULTILINE)
    assert stamp is not None and stamp.group(1) == GRPC_VERSION
    probe = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
             f"import {module}_pb2 as pb, {module}_pb2_grpc as rpc; "
             f"print(rpc.GRPC_GENERATED_VERSION, pb.DESCRIPTOR.package, "
             f"hasattr(rpc, {compiled.plan.names.service + 'Stub'!r}))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == [GRPC_VERSION, compiled.plan.names.proto_package, "True"]


def test_the_stub_compiler_is_the_pinned_version() -> None:
    # The stubs refuse an older grpcio at import: the compiler and the runtime pin must agree.
    assert importlib.metadata.version("grpcio-tools") == GRPC_VERSION
    assert importlib.metadata.version("grpcio") == GRPC_VERSION


def test_comparison_reports_missing_extra_and_changed_files() -> None:
    golden = {"a.txt": "one\n", "b.txt": "two\n"}
    built = {"b.txt": "2\n", "c.txt": "three\n"}
    problems = _differences(golden, built, "case")
    assert problems[0] == "missing from the build (golden file case/a.txt not generated)\n"
    assert problems[1] == "extra: case/c.txt is generated but has no golden file\n"
    assert problems[2].splitlines() == ["--- golden/case/b.txt", "+++ build/case/b.txt",
                                        "@@ -1 +1 @@", "-two", "+2"]


def test_every_golden_tree_has_a_spec(update_golden: bool) -> None:
    # Last in this module, so that --update-golden has written the trees before this runs.
    assert {"digit-net", "fare-estimator"} <= set(CASES)
    orphans = sorted(p for p in GOLDEN.iterdir() if p.is_dir() and p.name not in CASES)
    if update_golden:
        for orphan in orphans:
            shutil.rmtree(orphan)
        orphans = []
    assert not orphans, f"golden trees without a spec: {orphans} (run scripts/golden)"
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) == CASES
