"""``pymlc schema`` (the JSON Schema editors use for pyml.yaml): it accepts every example spec,
rejects structural errors the way ``pymlc validate`` does, and docs/pyml.schema.json is it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from pymlc.compiler.spec import Spec

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "pyml.schema.json"
EXAMPLES = sorted((ROOT / "specs").glob("*/pyml.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=../../docs/pyml.schema.json"


def schema_output() -> str:
    done = subprocess.run([sys.executable, "-m", "pymlc", "schema"], capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_output())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_command_output(update_golden: bool) -> None:
    fresh = schema_output()
    if update_golden:
        COMMITTED.write_text(fresh)
    assert COMMITTED.read_text() == fresh, (
        "docs/pyml.schema.json is stale: run `pymlc schema > docs/pyml.schema.json`"
        " (or pytest --update-golden) and commit it")


def test_there_are_example_specs() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_spec_validates(validator: jsonschema.Draft202012Validator,
                                      path: Path) -> None:
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_spec_points_editors_at_the_committed_schema(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == SCHEMA_LINE
    assert (path.parent / first.split("=", 1)[1]).resolve() == COMMITTED


def test_a_scaffolded_spec_validates(validator: jsonschema.Draft202012Validator,
                                     tmp_path: Path) -> None:
    for kind in ("dataframe", "tensor"):
        subprocess.run([sys.executable, "-m", "pymlc", "init", f"m-{kind}", "--kind", kind],
                       cwd=tmp_path, check=True, capture_output=True, timeout=60)
        data = yaml.safe_load((tmp_path / f"m-{kind}" / "pyml.yaml").read_text())
        assert list(validator.iter_errors(data)) == []


BASE: dict[str, Any] = {
    "pyml": 1,
    "name": "fare",
    "version": "1.0.0",
    "model": {"kind": "dataframe", "entrypoint": "model:Fare"},
    "inputs": [{"name": "distance", "type": "float64", "nullable": True}],
    "outputs": [{"name": "fare", "type": "float64"}],
    "serving": {"port": 8500},
    "batch": {"write_mode": "append"},
}


def test_the_base_case_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(BASE)) == []
    Spec.model_validate(BASE)


DELETE = object()


def edited(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """BASE with the value at ``path`` replaced (``DELETE`` removes the key)."""
    data = copy.deepcopy(BASE)
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


BAD = {
    # unknown keys, at every level
    "unknown top-level key": (("modle",), {"kind": "dataframe"}),
    "unknown model key": (("model", "entry_point"), "model:Fare"),
    "unknown field key": (("inputs", 0, "nulable"), True),
    "unknown serving key": (("serving", "prot"), 8500),
    # wrong types
    "format version as a string": (("pyml",), "1"),
    "version as a number": (("version",), 1.4),
    "inputs as a mapping": (("inputs",), {"distance": "float64"}),
    "nullable as a string": (("inputs", 0, "nullable"), "yes"),
    "port as a string": (("serving", "port"), "8500"),
    "shape of strings": (("inputs", 0, "shape"), ["-1"]),
    # bad enum values
    "unknown model kind": (("model", "kind"), "graph"),
    "unknown column type": (("inputs", 0, "type"), "flaot64"),
    "unknown tensor dtype": (("outputs", 0, "dtype"), "float8"),
    "unknown write mode": (("batch", "write_mode"), "upsert"),
    "unsupported format version": (("pyml",), 2),
    # missing required keys
    "no model": (("model",), DELETE),
    "no inputs": (("inputs",), DELETE),
    "no entrypoint": (("model", "entrypoint"), DELETE),
    "field without name": (("outputs", 0, "name"), DELETE),
    # values out of range or pattern
    "empty outputs": (("outputs",), []),
    "port zero": (("serving", "port"), 0),
    "uppercase name": (("name",), "Fare"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_structural_errors_are_rejected(validator: jsonschema.Draft202012Validator,
                                        case: str) -> None:
    path, value = BAD[case]
    data = edited(path, value)
    assert list(validator.iter_errors(data)), f"the schema accepts: {case}"
    # The editor must never flag what pymlc accepts: pymlc rejects the same document.
    with pytest.raises(ValidationError):
        Spec.model_validate(data)


def test_errors_point_at_the_offending_key(validator: jsonschema.Draft202012Validator) -> None:
    error = jsonschema.exceptions.best_match(
        validator.iter_errors(edited(("inputs", 0, "type"), "flaot64")))
    assert error is not None
    assert list(error.absolute_path)[:3] == ["inputs", 0, "type"]
    unknown = jsonschema.exceptions.best_match(validator.iter_errors(edited(("modle",), 1)))
    assert unknown is not None and "modle" in unknown.message
