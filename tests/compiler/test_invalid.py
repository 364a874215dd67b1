"""The invalid-spec corpus: every ``tests/invalid/<case>.yaml`` fails with exactly ``<case>.err``.

Each case is written as ``pyml.yaml`` into a copy of ``tests/invalid/_skeleton/`` (a model
folder with real files, so that path checks have something to find), then compiled. The
expected diagnostics are the text ``pymlc validate`` prints, one per line, with the display name
``pyml.yaml``. ``pytest --update-golden`` rewrites the ``.err`` files; review them like code.
A few cases also go through the real CLI in a subprocess: exit code 1, the same text on stderr,
parseable ``--format json``, and never a traceback.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pymlc.compiler.errors import Diagnostic, SpecError, render
from pymlc.compiler.pipeline import compile_spec

INVALID = Path(__file__).resolve().parent.parent / "invalid"
SKELETON = INVALID / "_skeleton"
CASES = sorted(p.stem for p in INVALID.glob("*.yaml"))
PYMLC = Path(sys.executable).with_name("pymlc")
LINE = re.compile(r"^pyml\.yaml:(\d+):(\d+): error\[E\d{3}\]: \S.*$")
MARKER = "PWNED"  # what the hostile cases try to create with `touch`


def _link_outside(folder: Path) -> None:
    outside = folder.parent / "outside.json"
    outside.write_text('[{"trip_distance_km": 1.0}]\n')
    (folder / "examples" / "escape.json").symlink_to(outside)


# Cases that need more than the skeleton: files a YAML text cannot create.
SETUP: dict[str, Callable[[Path], None]] = {"path_symlink": _link_outside}


def _model_folder(case: str, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(SKELETON, folder)
    shutil.copyfile(INVALID / f"{case}.yaml", folder / "pyml.yaml")
    SETUP.get(case, lambda _: None)(folder)
    return folder


# CPU seconds a refusal may take. Refused, a bomb costs milliseconds; expanded, its millions of
# nodes cost minutes. This thread's CPU time: a loaded machine does not move it.
REFUSE_CPU_S = 5.0


def _diagnose(folder: Path) -> tuple[list[Diagnostic], float]:
    start = time.thread_time()
    with pytest.raises(SpecError) as caught:
        compile_spec(folder / "pyml.yaml", display="pyml.yaml")
    return caught.value.diagnostics, time.thread_time() - start


def _expected(case: str) -> str:
    path = INVALID / f"{case}.err"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _compare(case: str, actual: str, update: bool) -> None:
    path = INVALID / f"{case}.err"
    if update:
        path.write_text(actual, encoding="utf-8", newline="\n")
        return
    expected = _expected(case)
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"tests/invalid/{case}.err (expected)", tofile="actual"))
        pytest.fail(f"diagnostics of {case} differ (pytest --update-golden rewrites them):\n"
                    f"{diff}", pytrace=False)


def test_corpus_is_large_and_every_case_says_why() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        first = (INVALID / f"{case}.yaml").read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Must fail: "), f"{case}.yaml must start with why it fails"
    orphans = {p.stem for p in INVALID.glob("*.err")} - set(CASES)
    assert not orphans, f".err files without a case: {sorted(orphans)}"


@pytest.mark.parametrize("case", CASES)
def test_invalid_spec(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      update_golden: bool) -> None:
    folder = _model_folder(case, tmp_path)
    monkeypatch.chdir(folder)  # a hostile `touch PWNED` would land here
    diagnostics, elapsed = _diagnose(folder)
    text = render(diagnostics) + "\n"
    _compare(case, text, update_golden)

    assert not (folder / MARKER).exists(), "a YAML tag or a value was executed"
    assert elapsed < REFUSE_CPU_S, f"{case} took {elapsed:.2f} s of CPU; hostile input must be" \
        " refused, never expanded"
    # Every diagnostic points at a line and column, and they come sorted by position.
    assert all(d.position is not None for d in diagnostics)
    positions = [(d.position.line, d.position.col) for d in diagnostics if d.position]
    assert positions == sorted(positions)
    assert all(LINE.match(line) for line in text.splitlines()), text


def test_several_errors_are_all_reported() -> None:
    lines = _expected("several_errors").splitlines()
    codes = [line.split("[")[1].split("]")[0] for line in lines]
    assert len(lines) >= 8
    assert {"E101", "E102", "E103", "E106", "E110", "E201", "E104"} <= set(codes)


def test_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    for case in ("alias_bomb", "merge_key_bomb", "deep_nesting", "recursive_alias"):
        folder = _model_folder(case, tmp_path / case)
        diagnostics, elapsed = _diagnose(folder)
        assert elapsed < REFUSE_CPU_S, f"{case}: {elapsed:.3f} s of CPU"
        assert [d.code for d in diagnostics] == ["E006"]


def test_messages_name_the_field_the_value_and_the_fix() -> None:
    typo = _expected("typo_type")
    assert "inputs[0].type: unknown type 'flaot64' (did you mean 'float64'?)" in typo
    assert "(did you mean 'description'?)" in _expected("unknown_key_top")
    assert "(did you mean 'port'?)" in _expected("unknown_key_nested")
    assert "(did you mean 'nullable'?)" in _expected("unknown_key_nested")
    assert 'got the number 3.10; quote it: "3.10"' in _expected("python_float")
    assert "write 1.0e-6" in _expected("number_as_string")


# --- the real CLI ------------------------------------------------------------------------------

CLI_CASES = ["typo_type", "several_errors", "python_tag", "alias_bomb", "broken_yaml",
             "empty_file", "path_symlink", "duplicate_keys"]


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYMLC), "validate", "pyml.yaml", *args], cwd=folder,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow  # the CLI in a child process per case; test_invalid_spec covers the corpus
@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_reports_the_corpus_text_and_exits_1(case: str, tmp_path: Path) -> None:
    folder = _model_folder(case, tmp_path)
    result = _run(folder)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr == _expected(case)
    assert not (folder / MARKER).exists()


@pytest.mark.slow  # the CLI in a child process per case
@pytest.mark.parametrize("case", ["several_errors", "python_tag", "tab_indent"])
def test_cli_json_has_line_and_column(case: str, tmp_path: Path) -> None:
    folder = _model_folder(case, tmp_path)
    result = _run(folder, "--format", "json")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    expected = [LINE.match(line) for line in _expected(case).splitlines()]
    got = [(d["file"], d["line"], d["column"], d["level"]) for d in report["diagnostics"]]
    assert got == [("pyml.yaml", int(m[1]), int(m[2]), "error") for m in expected if m]
    for d in report["diagnostics"]:
        assert d["code"].startswith("E") and d["message"]
