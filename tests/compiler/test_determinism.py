"""Invariant 1: same spec + same lock + same pymlc => byte-identical files, anywhere.

Each example spec is copied to two unrelated folders and built there by the real CLI, in
separate processes with different hash seeds and time zones; the trees must be identical and
must not mention where or when they were built.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
CASES = sorted(p.parent.name for p in SPECS.glob("*/pyml.yaml"))
# Dates and times as clocks print them: 2024-05-01, 12:30:59, 20240501T1230.
TIMESTAMP = re.compile(r"\b(19|20)\d\d-[01]\d-[0-3]\d\b|\b[0-2]\d:[0-5]\d:[0-5]\d\b"
                       r"|\b(19|20)\d{6}T\d{4}")
STUB = re.compile(r"_pb2(_grpc)?\.pyi?$")
EPOCH = "1970-01-01"  # documented in the proto as the origin of dates: a constant, not a clock


def _copy_spec(case: str, parent: Path) -> Path:
    target = parent / case
    shutil.copytree(SPECS / case, target, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    return target


def _build(folder: Path, *, hash_seed: str, tz: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TZ": tz, "NO_COLOR": "1"}
    subprocess.run([sys.executable, "-m", "pymlc", "build"], cwd=folder, env=env, check=True,
                   capture_output=True)


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module", params=CASES)
def two_builds(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    case: str = request.param
    first = _copy_spec(case, tmp_path_factory.mktemp("first-checkout"))
    second = _copy_spec(case, tmp_path_factory.mktemp("elsewhere") / "deeper" / "path")
    _build(first, hash_seed="0", tz="UTC")
    _build(second, hash_seed="4242", tz="Pacific/Chatham")
    return first, second


def test_two_builds_are_byte_identical(two_builds: tuple[Path, Path]) -> None:
    first, second = two_builds
    built = _tree(first / "generated")
    assert built == _tree(second / "generated")
    assert (first / "pyml.lock").read_bytes() == (second / "pyml.lock").read_bytes()
    assert "Dockerfile" in built and "manifest.json" in built


def test_build_equals_the_committed_lock_and_golden_manifest(two_builds: tuple[Path, Path]) -> None:
    first, _ = two_builds
    case = first.name
    assert (first / "pyml.lock").read_bytes() == (SPECS / case / "pyml.lock").read_bytes()
    golden = ROOT / "tests" / "golden" / case / "manifest.json"
    assert (first / "generated" / "manifest.json").read_bytes() == golden.read_bytes()


def test_output_does_not_say_where_or_when_it_was_built(two_builds: tuple[Path, Path]) -> None:
    first, second = two_builds
    places = {str(first), str(second), str(first.parent), str(second.parent), str(ROOT),
              str(Path.home()), sys.prefix, sys.base_prefix, os.getcwd(), "/tmp/", "pytest-of",
              first.parent.name, second.parent.parent.parent.name}
    hostname = socket.gethostname()
    today = datetime.date.today().isoformat()
    for path, data in _tree(first / "generated").items():
        text = data.decode("utf-8")
        for place in places:
            assert place not in text, f"{path} contains {place!r}"
        if len(hostname) >= 4:  # a hostname like "a" would match any word
            assert hostname not in text, f"{path} contains the hostname {hostname!r}"
        stamps = [m.group(0) for m in TIMESTAMP.finditer(text)]
        assert set(stamps) <= {EPOCH}, f"{path} contains a timestamp: {stamps}"
        assert today not in text, f"{path} contains today's date"


def test_text_files_are_utf8_lf_with_one_trailing_newline(two_builds: tuple[Path, Path]) -> None:
    first, _ = two_builds
    files = _tree(first / "generated")
    files["../pyml.lock"] = (first / "pyml.lock").read_bytes()
    for path, data in files.items():
        data.decode("utf-8")  # raises if not UTF-8
        assert b"\r" not in data, f"{path} has a CR"
        assert data.endswith(b"\n") and not data.endswith(b"\n\n"), f"{path}: trailing newlines"
        if not STUB.search(path):  # protoc's own layout is not ours to police
            trailing = [n for n, line in enumerate(data.split(b"\n"), 1)
                        if line.endswith((b" ", b"\t"))]
            assert not trailing, f"{path}: trailing whitespace on lines {trailing}"

def test_timestamp_pattern_catches_clock_output() -> None:
    assert TIMESTAMP.search("built 2024-05-01 at 12:30:59")
    assert TIMESTAMP.search("20240501T1230")
    assert not TIMESTAMP.search('"sha256": "aac5c430c758c0bf90d56405e37ffbcf93699d6c658f2518"')
    assert not TIMESTAMP.search("version: 1.4.0, port 8500, python:3.11-slim")
