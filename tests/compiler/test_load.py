"""Stage 1, load: YAML text becomes plain data with a position for every key, value and scalar,
and hostile YAML is refused quickly with a diagnostic (never executed, never a traceback)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pymlc.compiler.errors import Diagnostic, Level, Position, SpecError, render
from pymlc.compiler.load import (
    MAX_ALIAS_NODES,
    MAX_BYTES,
    MAX_DEPTH,
    Document,
    load_document,
    parse_document,
)


def _refused(text: str) -> list[Diagnostic]:
    with pytest.raises(SpecError) as caught:
        parse_document(text, "pyml.yaml")
    return caught.value.diagnostics


def _one(text: str) -> Diagnostic:
    [diagnostic] = _refused(text)
    return diagnostic


def test_positions_of_keys_values_and_scalars() -> None:
    doc = parse_document("pyml: 1\nmodel:\n  python: 3.10\ninputs:\n  - {name: x}\n", "f.yaml")
    assert doc.data == {"pyml": 1, "model": {"python": 3.1}, "inputs": [{"name": "x"}]}
    assert doc.keys[("model", "python")] == Position(3, 3)
    assert doc.values[("model", "python")] == Position(3, 11)
    assert doc.values[("inputs", 0)] == Position(5, 5)
    assert doc.values[("inputs", 0, "name")] == Position(5, 12)
    # What the user typed, for messages: YAML made 3.1 of it.
    assert doc.scalars[("model", "python")] == "3.10"
    assert not any("<key>" in loc for loc in doc.values)


def test_position_falls_back_to_the_closest_parent() -> None:
    doc = parse_document("model:\n  kind: tensor\n", "f.yaml")
    assert doc.position(("model", "entrypoint")) == Position(2, 3)
    assert doc.position(("model", "entrypoint"), key=True) == Position(1, 1)
    assert doc.error(("nowhere", 3), "E999", "x").position == Position(1, 1)


def test_crlf_and_byte_order_mark_are_accepted() -> None:
    doc = parse_document("\ufeffname: a\r\nversion: 1.0.0\r\n", "f.yaml")
    assert doc.data == {"name": "a", "version": "1.0.0"}
    assert doc.values[("version",)] == Position(2, 10)
    assert "\r" not in doc.text


def test_dates_stay_text() -> None:
    assert parse_document("version: 2024-01-31\n", "f.yaml").data == {"version": "2024-01-31"}


def test_merge_keys_override_without_being_duplicates() -> None:
    text = ("base: &col {type: float64, nullable: false}\n"
            "inputs:\n"
            "  - {<<: *col, name: a}\n"
            "  - {<<: *col, name: b, nullable: true}\n")
    doc = parse_document(text, "f.yaml")
    assert doc.data["inputs"] == [{"type": "float64", "nullable": False, "name": "a"},
                                  {"type": "float64", "nullable": True, "name": "b"}]
    assert doc.values[("inputs", 1, "nullable")] == Position(4, 35)


def test_a_key_written_twice_is_still_a_duplicate_next_to_a_merge() -> None:
    text = "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n  y: 3\n"
    d = _one(text)
    assert (d.code, d.loc, d.position) == ("E004", ("other", "y"), Position(5, 3))


def test_every_duplicate_key_is_reported() -> None:
    codes = [(d.code, d.position) for d in _refused("a: 1\nb: 2\na: 3\nb: 4\n")]
    assert codes == [("E004", Position(3, 1)), ("E004", Position(4, 1))]


@pytest.mark.parametrize("tag", [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/name:os.system",
    "!!python/module:os",
    '!!python/object/apply:subprocess.check_call [["touch", "{marker}"]]',
    "!custom {marker}",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
])
def test_tags_are_refused_and_never_run(tag: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = f"pyml: 1\nname: {tag.replace('{marker}', str(marker))}\n"
    d = _one(text)
    assert (d.code, d.loc, d.position) == ("E002", ("name",), Position(2, 7))
    assert "never executed" in d.message
    assert not marker.exists()


def test_a_tag_on_a_key_is_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    diagnostics = _refused(f'? !!python/object/apply:os.system ["touch {marker}"]\n: 1\n')
    assert "E002" in [d.code for d in diagnostics]
    assert not marker.exists()


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [
    _bomb(9),
    "a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}\n" + "".join(
        f"{c}: &{c} {{<<: [" + ", ".join([f"*{p}"] * 10) + "]}\n"
        for p, c in zip("abcdefgh", "bcdefghi")),
    "a: &a [*a]\n",
    "a: &a {b: {c: *a}}\n",
    "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)),
], ids=["alias-bomb", "merge-bomb", "recursive-list", "recursive-map", "brackets", "indents"])
def test_hostile_structure_is_refused_fast(text: str) -> None:
    start = time.thread_time()  # CPU, so a loaded machine does not move it
    d = _one(text)
    elapsed = time.thread_time() - start
    assert d.code == "E006" and d.position is not None
    assert elapsed < 5.0, f"{elapsed:.2f} s of CPU: refused, a bomb costs milliseconds;" \
        " expanded, minutes"


def test_limits_leave_room_for_real_specs() -> None:
    deep = "a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n"
    assert parse_document(deep, "f.yaml").data["a"]
    many = "inputs:\n" + "".join(f"  - {{name: c{i}, type: int32}}\n" for i in range(1000))
    assert len(parse_document(many, "f.yaml").data["inputs"]) == 1000
    assert _bomb(3).count("*") * 10 < MAX_ALIAS_NODES
    assert parse_document(_bomb(3), "f.yaml").data["a2"][0][0][0] == "lol"


@pytest.mark.slow  # a 10,000-column spec, several times
def test_wide_specs_are_no_bomb() -> None:
    # Nodes written out cost what the file's size allows; only what aliases add is bounded.
    wide = "inputs:\n" + "".join(f"  - {{name: c{i}, type: float64, nullable: true}}\n"
                                 for i in range(20_000))
    assert len(parse_document(wide, "f.yaml").data["inputs"]) == 20_000
    # A shared template merged into every column adds ~5 nodes per column: still no bomb.
    merged = "template: &t {type: float64, nullable: true}\ninputs:\n" + "".join(
        f"  - {{<<: *t, name: c{i}}}\n" for i in range(10_000))
    columns = parse_document(merged, "f.yaml").data["inputs"]
    assert columns[-1] == {"type": "float64", "nullable": True, "name": "c9999"}


def test_the_alias_budget_is_what_aliases_add() -> None:
    # One list of 10 written out, referenced n times: the aliases add 11 nodes each.
    def spec(n: int) -> str:
        return "a: &a [" + ", ".join("x" * 10) + "]\nb: [" + ", ".join(["*a"] * n) + "]\n"

    fits = MAX_ALIAS_NODES // 11
    assert len(parse_document(spec(fits), "f.yaml").data["b"]) == fits
    d = _one(spec(fits + 1))
    assert d.code == "E006" and "by more than" in d.message and d.position is not None


def test_broken_yaml_points_at_the_problem_and_where_it_started() -> None:
    d = _one("pyml: 1\nname: [a, b\nversion: 1.0.0\n")
    assert d.code == "E001" and d.position == Position(3, 8)
    assert "started at 2:7" in d.message


def test_tabs_get_a_hint() -> None:
    d = _one("model:\n\tkind: tensor\n")
    assert d.position == Position(2, 1) and d.message.endswith("indent with spaces, not tabs")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file_is_one_diagnostic(text: str) -> None:
    d = _one(text)
    assert (d.code, d.position) == ("E005", Position(1, 1))


def test_too_large_a_file_is_refused() -> None:
    d = _one("a: " + "x" * MAX_BYTES + "\n")
    assert d.code == "E001" and str(MAX_BYTES) in d.message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_document(tmp_path / "missing.yaml", "pyml.yaml")
    [d] = caught.value.diagnostics
    assert d.code == "E000" and str(d).startswith("pyml.yaml: error[E000]: cannot read")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_document(latin, "pyml.yaml")
    assert "not UTF-8 (byte 9)" in str(caught.value)


def test_load_document_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "pyml.yaml"
    path.write_text("name: a\n")
    doc = load_document(path, "models/a/pyml.yaml")
    assert isinstance(doc, Document) and doc.file == "models/a/pyml.yaml"
    assert load_document(path).file == str(path)


# --- errors.py: how diagnostics print ---------------------------------------------------------

def test_spec_error_sorts_by_position_and_render_truncates() -> None:
    def at(line: int) -> Diagnostic:
        return Diagnostic("pyml.yaml", ("inputs", line, "type"), Position(line, 5), Level.ERROR,
                          "E110", f"bad {line}")

    error = SpecError([at(9), at(2), at(5)])
    assert [d.position.line for d in error.diagnostics if d.position] == [2, 5, 9]
    assert str(error).splitlines()[0] == "pyml.yaml:2:5: error[E110]: inputs[2].type: bad 2"
    text = render([at(i) for i in range(1, 8)], limit=5)
    assert text.splitlines()[-1] == "... and 2 more" and len(text.splitlines()) == 6
    assert at(3).to_json() == {"file": "pyml.yaml", "field": "inputs[3].type", "line": 3,
                               "column": 5, "level": "error", "code": "E110", "message": "bad 3"}
