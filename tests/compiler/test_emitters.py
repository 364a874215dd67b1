"""Section tests: the small functions that put user strings and defaults into generated files,
with their expected output inline (goldens guard whole files; these pin down intent)."""

from __future__ import annotations

import ast
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from pymlc.compiler import lower
from pymlc.compiler.emit.base import docker_quote, proto_comment, py_str, shell_quote, yaml_str
from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.spec import Spec
from pymlc.compiler.write import write_tree

# Strings that break naive quoting: quotes, backslashes, expansions, comment closers, line
# separators other than LF, combining marks and a character outside the BMP.
NASTY = [
    "",
    "plain",
    'say "hi"',
    "back\\slash\\",
    "$HOME ${PATH} `id` $(id)",
    "*/ // # -- ;",
    "two\nlines",
    "tab\there",
    "para\u2028graph\u2029sep\x85nel",
    "cafe\u0301 \u00e9t\u00e9",
    "emoji \U0001f600 and \U0001d11e",
    "{{ jinja }} {% raw %}",
    "yes: no # not a comment",
]


# --- escapers -------------------------------------------------------------------------------

def test_docker_quote() -> None:
    assert docker_quote("fare-estimator") == "'fare-estimator'"
    assert docker_quote('say "hi"') == "'say \"hi\"'"
    assert docker_quote("it's") == "'it'\"'\"'s'"
    assert docker_quote("$HOME ${PATH}") == "'$HOME ${PATH}'"
    assert docker_quote("back\\slash") == "'back\\slash'"
    assert docker_quote("  two\n\tlines  \r\n ") == "'two lines'"
    assert docker_quote("para\u2028graph") == "'para graph'"
    assert docker_quote(1.5) == "'1.5'"
    assert docker_quote("") == "''"


@pytest.mark.parametrize("text", NASTY)
def test_docker_quote_is_one_quoted_line(text: str) -> None:
    quoted = docker_quote(text)
    assert "\n" not in quoted and "\r" not in quoted
    # Docker reads single quotes as a POSIX shell does: one word, the text, nothing expanded.
    assert shlex.split(quoted) == [" ".join(text.split())]


def test_proto_comment() -> None:
    assert proto_comment("Estimated fare") == "// Estimated fare"
    assert proto_comment("one\ntwo", "  ") == "  // one\n  // two"
    assert proto_comment("one\n\nthree") == "// one\n//\n// three"
    assert proto_comment("") == "//"
    assert proto_comment("trailing   ") == "// trailing"
    assert proto_comment("a\u2028message Evil {}") == "// a\n// message Evil {}"
    assert proto_comment("a\r\nb\rc") == "// a\n// b\n// c"


def test_py_str() -> None:
    assert py_str("model.json") == '"model.json"'
    assert py_str('say "hi"\n') == '"say \\"hi\\"\\n"'
    assert py_str("\u00e9") == '"\\u00e9"'
    assert py_str("\u2028") == '"\\u2028"'
    assert py_str("\U0001f600") == '"\\U0001f600"'
    assert py_str("\x7f\x00") == '"\\u007f\\u0000"'


def test_yaml_str() -> None:
    assert yaml_str("fare-estimator") == '"fare-estimator"'
    assert yaml_str("yes") == '"yes"'  # stays a string, never a YAML 1.1 boolean
    assert yaml_str("1.0") == '"1.0"'
    assert yaml_str("a: b # c") == '"a: b # c"'
    assert yaml_str("\U0001f600") == '"\\U0001f600"'
    assert yaml_str("\x85") == '"\\u0085"'


def test_shell_quote() -> None:
    assert shell_quote("grpcio==1.81.1") == "grpcio==1.81.1"
    assert shell_quote("pandas>=2.2,<3") == "'pandas>=2.2,<3'"
    assert shell_quote("it's") == "'it'\"'\"'s'"


@pytest.mark.parametrize("text", NASTY)
def test_py_str_and_yaml_str_round_trip(text: str) -> None:
    for quoted in (py_str(text), yaml_str(text)):
        assert quoted.isascii() and quoted.isprintable()
    assert ast.literal_eval(py_str(text)) == text
    assert yaml.safe_load(f"key: {yaml_str(text)}\n") == {"key": text}


# --- lower: derived names and defaults --------------------------------------------------------

@pytest.mark.parametrize(("name", "service"), [
    ("fare-estimator", "FareEstimator"),
    ("digit-net", "DigitNet"),
    ("a", "A"),
    ("model-3d", "Model3d"),
    ("x2-y", "X2Y"),
    # would clash with the messages of the generated proto
    ("predict-request", "PredictRequestService"),
    ("predict-response", "PredictResponseService"),
    ("tensor", "TensorService"),
    ("double-column", "DoubleColumnService"),
    ("string-column", "StringColumnService"),
    ("column", "ColumnService"),
    ("nullable", "Nullable"),
])
def test_service_name(name: str, service: str) -> None:
    assert lower._service(name) == service


def _spec(**changes: Any) -> Spec:
    data: dict[str, Any] = {
        "pyml": 1, "name": "m", "version": "1.2.3",
        "model": {"kind": "dataframe", "entrypoint": "model:M"},
        "inputs": [{"name": "x", "type": "float64"}],
        "outputs": [{"name": "y", "type": "float64"}],
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[section] = value
    return Spec.model_validate(data)


@pytest.mark.parametrize(("changes", "python"), [
    ({}, "3.11"),
    ({"model__python": "3.12"}, "3.12"),
    ({"model__python": "3.10", "image__base": "python:3.12-slim"}, "3.10"),  # explicit wins
    ({"image__base": "python:3.10-slim"}, "3.10"),
    ({"image__base": "python:3.12.4-bookworm"}, "3.12"),
    ({"image__base": "python:3.9"}, "3.9"),
    ({"image__base": "python:3.13@sha256:" + "a" * 64}, "3.13"),
    ({"image__base": "python:latest"}, "3.11"),
    ({"image__base": "python:3-slim"}, "3.11"),
    ({"image__base": "debian:bookworm"}, "3.11"),
    ({"image__base": "docker.io/library/python:3.10-slim"}, "3.10"),
    ({"image__base": "registry.example.com:5000/mirror/python:3.12"}, "3.12"),
    ({"image__repository": "registry.example.com/ml/m"}, "3.11"),
])
def test_python_version(changes: dict[str, str], python: str) -> None:
    assert lower._python(_spec(**changes)) == python
    assert lower.DEFAULT_PYTHON == "3.11"


def test_lowering_fills_every_default() -> None:
    spec = _spec(version="2.0.0+build.5")
    plan = lower.lower(spec, _lock(), spec_file="pyml.yaml", spec_sha256="0" * 64,
                       pymlc_version="9.9.9")
    assert plan.major == 2 and plan.description == ""
    assert plan.model.artifacts == "." and plan.model.python == "3.11"
    assert plan.model.requirements is None and plan.model.setup is None
    assert plan.serving == lower.DEFAULT_SERVING
    assert plan.serving.socket == "/run/pyml/model.sock" and plan.serving.port is None
    assert plan.batch == lower.DEFAULT_BATCH
    assert (plan.image.base, plan.image.repository, plan.image.tag) == (
        "python:3.11-slim", "m", "2.0.0_build.5")
    assert (plan.names.module, plan.names.proto_package, plan.names.proto_path) == (
        "m_v2", "pyml.m.v2", "proto/m_v2.proto")
    assert plan.examples is None


def test_lowering_merges_given_settings_over_defaults() -> None:
    spec = _spec(serving__port=8500, serving__threads=8, batch__write_mode="append",
                 model__artifacts="weights/", image__base="python:3.12-slim")
    plan = lower.lower(spec, _lock(), spec_file="pyml.yaml", spec_sha256="0" * 64,
                       pymlc_version="9.9.9")
    assert (plan.serving.port, plan.serving.threads) == (8500, 8)
    assert plan.serving.timeout_ms == lower.DEFAULT_SERVING.timeout_ms
    assert (plan.batch.write_mode, plan.batch.rows_per_batch) == (
        "append", lower.DEFAULT_BATCH.rows_per_batch)
    assert plan.model.artifacts == "weights"
    assert (plan.model.python, plan.image.base) == ("3.12", "python:3.12-slim")


def _lock() -> Any:
    from pymlc.compiler.lock import EMPTY_LOCK, update_lock

    return update_lock(EMPTY_LOCK, ["x"], ["y"])


# --- end to end: hostile free text through a real build --------------------------------------

HOSTILE = ('Fare "model" with $HOME, `id`, back\\slash, */ and {{ jinja }}\n'
           "message Evil {}\nservice Evil { rpc X(PredictRequest) returns (PredictResponse); }\n"
           "para\u2028graph, caf\u00e9 \U0001f600")


def test_hostile_descriptions_stay_inert(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.py").write_text("M = None\n", encoding="utf-8")
    spec = {
        "pyml": 1, "name": "hostile", "version": "1.0.0", "description": HOSTILE,
        "model": {"kind": "dataframe", "entrypoint": "model:M"},
        "inputs": [{"name": "x", "type": "float64", "description": HOSTILE}],
        "outputs": [{"name": "y", "type": "string", "nullable": True, "description": HOSTILE}],
    }
    (folder / "pyml.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    compiled = compile_spec(folder / "pyml.yaml")  # protoc ran on the proto inside
    out = folder / "generated"
    write_tree(out, compiled.artifacts)

    proto = out / compiled.plan.names.proto_path
    descriptor_set = tmp_path / "set.pb"
    assert protoc.main(["protoc", f"-I{proto.parent}", f"--descriptor_set_out={descriptor_set}",
                        str(proto)]) == 0
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    assert [m.name for m in file.message_type] == [
        "DoubleColumn", "StringColumn", "PredictRequest", "PredictResponse"]
    assert [s.name for s in file.service] == ["Hostile"]

    dockerfile = (out / "Dockerfile").read_text(encoding="utf-8")
    parsed = DockerfileParser(fileobj=io.BytesIO(dockerfile.encode("utf-8")))
    assert [i["instruction"] for i in parsed.structure].count("FROM") == 3
    label = next(line for line in dockerfile.splitlines()
                 if "org.opencontainers.image.description=" in line)
    assert label.strip().endswith('\'Fare "model" with $HOME, `id`, back\\slash, */ and'
                                  ' {{ jinja }} message Evil {} service Evil { rpc'
                                  ' X(PredictRequest) returns (PredictResponse); } para graph,'
                                  ' caf\u00e9 \U0001f600\' \\')
    hadolint = subprocess.run([str(Path(sys.executable).parent / "hadolint"),
                               "--failure-threshold", "error", str(out / "Dockerfile")],
                              capture_output=True, text=True)
    assert hadolint.returncode == 0, hadolint.stdout

    schema = json.loads((out / "schema.json").read_text(encoding="utf-8"))
    assert schema["description"] == HOSTILE
    assert schema["$defs"]["request"]["items"]["properties"]["x"]["description"] == HOSTILE
    yaml.safe_load((out / "serving.yaml").read_text(encoding="utf-8"))
    ast.parse((out / "batch_job.py").read_text(encoding="utf-8"))
