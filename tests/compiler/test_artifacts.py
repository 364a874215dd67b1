"""The generated files are valid for the tools that consume them, not only equal to goldens.

protoc compiles the proto; the stubs import and carry the spec's fields; the Dockerfile parses
and passes hadolint; Python passes ``ast.parse`` and ruff; YAML and JSON load; the JSON Schema
is a schema and accepts the spec's own examples; the manifest's hashes are the files'.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from grpc_tools import protoc

from pymlc.compiler.pipeline import Compiled, compile_spec
from pymlc.compiler.write import write_tree

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
BIN = Path(sys.executable).parent
STUB_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")

# (field name, number, protobuf type name or scalar label) of PredictRequest / PredictResponse.
EXPECTED_MESSAGES = {
    "fare-estimator": {
        "PredictRequest": [("trip_distance_km", 1, "DoubleColumn"), ("city", 2, "StringColumn"),
                           ("pickup_hour", 3, "Int32Column"), ("passengers", 4, "Int32Column")],
        "PredictResponse": [("fare", 1, "DoubleColumn")],
    },
    "digit-net": {
        "PredictRequest": [("pixels", 1, "Tensor")],
        "PredictResponse": [("label", 1, "Tensor"), ("probabilities", 2, "Tensor")],
    },
}


class Built:
    def __init__(self, case: str, compiled: Compiled, out: Path) -> None:
        self.case, self.compiled, self.out = case, compiled, out
        self.module = compiled.plan.names.module

    def json(self, path: str) -> Any:
        return json.loads((self.out / path).read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=sorted(EXPECTED_MESSAGES))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    case: str = request.param
    compiled = compile_spec(SPECS / case / "pyml.yaml")
    out = tmp_path_factory.mktemp(case) / "generated"
    write_tree(out, compiled.artifacts)
    return Built(case, compiled, out)


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[dev]')"
    return str(found)


# --- proto and stubs ------------------------------------------------------------------------

def test_proto_compiles_with_protoc(built: Built, tmp_path: Path) -> None:
    proto = built.out / built.compiled.plan.names.proto_path
    status = protoc.main(["protoc", f"-I{proto.parent}", f"--python_out={tmp_path}",
                          f"--grpc_python_out={tmp_path}", str(proto)])
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{built.module}_pb2.py",
                                                          f"{built.module}_pb2_grpc.py"]


_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
pb = __import__(sys.argv[2] + "_pb2")
rpc = __import__(sys.argv[2] + "_pb2_grpc")
def describe(message):
    return [[f.name, f.number, f.message_type.name if f.message_type else f.type] for f in
            message.DESCRIPTOR.fields]
service = pb.DESCRIPTOR.services_by_name[sys.argv[3]]
request = pb.PredictRequest()
print(json.dumps({
    "PredictRequest": describe(pb.PredictRequest),
    "PredictResponse": describe(pb.PredictResponse),
    "methods": [[m.name, m.input_type.name, m.output_type.name] for m in service.methods],
    "stub": hasattr(rpc, sys.argv[3] + "Stub"),
    "roundtrip": pb.PredictRequest.FromString(request.SerializeToString()) == request,
}))
"""


def test_stubs_import_and_have_the_spec_fields(built: Built) -> None:
    service = built.compiled.plan.names.service
    result = subprocess.run([sys.executable, "-c", _PROBE, str(built.out), built.module, service],
                            capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    # FieldDescriptor.TYPE_DOUBLE = 1, TYPE_INT32 = 5
    scalar = {1: "double", 5: "int32"}
    for message, fields in EXPECTED_MESSAGES[built.case].items():
        assert [(n, num, t if isinstance(t, str) else scalar[t])
                for n, num, t in found[message]] == fields
    assert found["methods"] == [["Predict", "PredictRequest", "PredictResponse"]]
    assert found["stub"] and found["roundtrip"]


def test_model_config_numbers_agree_with_the_proto(built: Built) -> None:
    config = built.json("model.json")
    expected = EXPECTED_MESSAGES[built.case]
    assert [(f["name"], f["number"]) for f in config["inputs"]] == [
        (n, num) for n, num, _ in expected["PredictRequest"]]
    assert [(f["name"], f["number"]) for f in config["outputs"]] == [
        (n, num) for n, num, _ in expected["PredictResponse"]]


# --- Dockerfile -------------------------------------------------------------------------------

def _stages(dockerfile: Path) -> dict[str, list[dict[str, Any]]]:
    stages: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for instruction in DockerfileParser(path=str(dockerfile)).structure:
        if instruction["instruction"] == "FROM":
            current = []
            stages[instruction["value"].split()[-1]] = current
        current.append(instruction)
    return stages


def test_dockerfile_stages_user_and_labels(built: Built) -> None:
    dockerfile = built.out / "Dockerfile"
    stages = _stages(dockerfile)
    assert list(stages) == ["env", "serving", "batch"]
    assert stages["serving"][0]["value"] == "env AS serving"
    assert stages["batch"][0]["value"] == "env AS batch"
    for target in ("serving", "batch"):
        users = [i["value"] for i in stages[target] if i["instruction"] == "USER"]
        assert users and users[-1].split(":")[0] not in ("0", "root")
        assert [i["instruction"] for i in stages[target]].count("ENTRYPOINT") == 1
    # Labels end each target (a spec edit changes only that last layer), not the env stage.
    lines = dockerfile.read_text(encoding="utf-8").splitlines(keepends=True)
    manifest = built.json("manifest.json")
    spec_text = (SPECS / built.case / "pyml.yaml").read_text(encoding="utf-8")
    assert manifest["spec"]["sha256"] == hashlib.sha256(spec_text.encode()).hexdigest()
    starts = [stages[name][0]["startline"] for name in ("serving", "batch")] + [len(lines)]
    env_text = "".join(lines[:starts[0]])
    assert "LABEL" not in env_text
    for target, (start, end) in zip(("serving", "batch"), zip(starts, starts[1:]), strict=True):
        instructions = [i["instruction"] for i in stages[target] if i["instruction"] != "COMMENT"]
        assert instructions[-1] == "LABEL", target
        parsed = DockerfileParser(fileobj=io.BytesIO("".join(lines[start:end]).encode("utf-8")))
        assert parsed.labels["pymlc.spec.sha256"] == manifest["spec"]["sha256"]
        assert parsed.labels["org.opencontainers.image.title"] == built.compiled.plan.name
        assert parsed.labels["org.opencontainers.image.version"] == built.compiled.plan.version


def test_hadolint_finds_no_errors(built: Built) -> None:
    result = subprocess.run([_tool("hadolint"), "--failure-threshold", "error", "--no-color",
                             str(built.out / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " error:" not in result.stdout


# --- Python ---------------------------------------------------------------------------------

def test_generated_python_parses(built: Built) -> None:
    files = sorted([*built.out.rglob("*.py"), *built.out.rglob("*.pyi")])
    assert [p.name for p in files] == sorted(["batch_job.py"] + [built.module + s
                                                                 for s in STUB_SUFFIXES])
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_generated_python_passes_ruff(built: Built) -> None:
    ruff = [_tool("ruff"), "check", "--isolated", "--no-cache", "--select", "E9,F"]
    ours = subprocess.run([*ruff, str(built.out / "batch_job.py")], capture_output=True,
                          text=True)
    assert ours.returncode == 0, ours.stdout
    # protoc's stubs carry an unused `import warnings` (grpcio-tools' template): not ours to fix.
    stubs = [str(built.out / (built.module + s)) for s in STUB_SUFFIXES]
    theirs = subprocess.run([*ruff, "--ignore", "F401", *stubs], capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stdout


# --- YAML and JSON --------------------------------------------------------------------------

def test_serving_yaml_loads(built: Built) -> None:
    config = yaml.safe_load((built.out / "serving.yaml").read_text(encoding="utf-8"))
    plan = built.compiled.plan
    assert config["name"] == plan.name and config["version"] == plan.version
    assert config["proto"] == {"package": plan.names.proto_package, "service": plan.names.service,
                               "file": plan.names.proto_path}
    assert config["socket"] == plan.serving.socket
    assert config["port"] == plan.serving.port
    assert config["limits"]["max_message_bytes"] == plan.serving.max_message_bytes
    assert (built.out / config["proto"]["file"]).is_file()


def test_schema_json_is_a_schema_that_accepts_the_examples(built: Built) -> None:
    schema = built.json("schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    examples = SPECS / built.case / "examples"
    request = json.loads((examples / "input.json").read_text(encoding="utf-8"))
    response = json.loads((examples / "output.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(request)
    jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/response"}).validate(response)


def test_schema_json_rejects_what_the_model_would_reject(built: Built) -> None:
    validator = jsonschema.Draft202012Validator(built.json("schema.json"))
    assert not validator.is_valid({"unknown": 1})
    if built.case == "fare-estimator":
        row = {"trip_distance_km": 1.5, "city": None, "pickup_hour": 3, "passengers": 1}
        assert validator.is_valid([row])
        assert not validator.is_valid([{**row, "pickup_hour": "3"}])
        assert not validator.is_valid([{**row, "extra": 1}])
        assert not validator.is_valid([{k: v for k, v in row.items() if k != "city"}])
    else:
        assert validator.is_valid({"pixels": [[[0.0] * 8] * 8]})
        assert not validator.is_valid({"pixels": [[[0.0] * 7] * 8]})


def test_manifest_hashes_are_the_files(built: Built) -> None:
    manifest = built.json("manifest.json")
    on_disk = sorted(p.relative_to(built.out).as_posix() for p in built.out.rglob("*")
                     if p.is_file())
    assert sorted([*manifest["files"], "manifest.json"]) == on_disk
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((built.out / path).read_bytes()).hexdigest() == digest, path
    lock = (SPECS / built.case / "pyml.lock").read_bytes()
    assert manifest["lock"]["sha256"] == hashlib.sha256(lock).hexdigest()
    assert manifest["name"] == built.compiled.plan.name
