"""Names that collide with the generated code (issue 20, item 9): an input named ``HasField``
validated and built, then every typed Predict failed with INTERNAL. Such names are now a spec
error (E209); this suite derives the colliding names from protobuf itself, proves each collision
is real, and serves a spec of legal near misses (``values``, ``nulls``, ``has_field``, ...)."""

from __future__ import annotations

import ast
import keyword
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from contract_support import (
    Server,
    build,
    dataframe_model,
    dataframe_spec,
    serving,
    write_model,
)
from google.protobuf import message as protobuf_message
from grpc_tools import protoc

from pymlc.compiler import field_names
from pymlc.compiler.errors import SpecError
from pymlc.compiler.load import parse_document
from pymlc.compiler.validate import validate_document

# --- the names, derived from protobuf and grpcio-tools --------------------------------------------

_PROBE_PROTO = """syntax = "proto3";
package names_probe;
message Column { repeated double values = 1; }
message Request { Column x = 1; }
"""
_MEMBERS = """
import json, names_probe_pb2
from google.protobuf import message
cls = names_probe_pb2.Request
names = {*dir(cls), *dir(cls()), *getattr(cls, "__slots__", ()), *dir(message.Message)}
print(json.dumps(sorted(n for n in names if not n.startswith("__"))))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny proto compiled with the pinned grpcio-tools: _pb2.py and its type stub."""
    folder = tmp_path_factory.mktemp("names-probe")
    (folder / "names_probe.proto").write_text(_PROBE_PROTO)
    assert protoc.main(["protoc", f"-I{folder}", f"--python_out={folder}",
                        f"--pyi_out={folder}", "names_probe.proto"]) == 0
    return folder


def _members(folder: Path, implementation: str) -> set[str]:
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation,
               PYTHONPATH=str(folder))
    result = subprocess.run([sys.executable, "-c", _MEMBERS], env=env, capture_output=True,
                            text=True, check=True)
    return set(ast.literal_eval(result.stdout)) - {"x", "X_FIELD_NUMBER"}


def test_the_refused_members_are_exactly_protobufs_own(probe: Path) -> None:
    # Both of protobuf's Python runtimes: upb (the default) and the pure-Python one.
    derived = _members(probe, "upb") | _members(probe, "python")
    assert {n for n in dir(protobuf_message.Message) if not n.startswith("__")} <= derived
    assert "HasField" in derived and "_listener" in derived
    assert derived - {"DESCRIPTOR"} == field_names._PROTOBUF_MEMBERS - {"DESCRIPTOR"}, \
        "protobuf's message members changed: update field_names._PROTOBUF_MEMBERS"


def test_the_refused_stub_aliases_are_what_the_pyi_imports(probe: Path) -> None:
    tree = ast.parse((probe / "names_probe_pb2.pyi").read_text())
    aliases = {alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.asname}
    assert aliases and aliases <= field_names._STUB_ALIASES


# --- each collision is real ---------------------------------------------------------------------

def _module_with_field(folder: Path, name: str, index: int) -> str:
    package = f"collide{index}"
    (folder / f"{package}.proto").write_text(
        _PROBE_PROTO.replace("names_probe", package).replace(" x = 1", f" {name} = 1"))
    assert protoc.main(["protoc", f"-I{folder}", f"--python_out={folder}",
                        f"--pyi_out={folder}", f"{package}.proto"]) == 0
    return package


@pytest.mark.parametrize("name", ["HasField", "ClearField", "SerializeToString", "ByteSize",
                                  "ListFields", "CopyFrom", "MergeFrom", "WhichOneof"])
def test_a_protobuf_member_as_a_field_breaks_the_message(tmp_path: Path, name: str) -> None:
    # Without the spec error: the field hides the method (or the class cannot be built).
    package = _module_with_field(tmp_path, name, 0)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    code = f"""
import {package}_pb2 as pb
request = pb.Request()
getattr(request, {name!r}).values.append(1.0)     # the field, not the method
assert not callable(getattr(request, {name!r}))
"""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr  # the method is gone: hidden by the field


def test_a_generated_message_name_as_a_field_breaks_the_type_stub(tmp_path: Path) -> None:
    _module_with_field(tmp_path, "Column", 1)
    stub = (tmp_path / "collide1_pb2.pyi").read_text()
    # The class body now binds Column to the field: the annotation below it is no type.
    assert "    Column: Column\n" in stub


# --- the spec errors ------------------------------------------------------------------------------

_SPEC = """pyml: 1
name: names-check
version: 1.0.0
model: {{kind: dataframe, entrypoint: model:M}}
inputs:
  - {{name: "{name}", type: float64}}
outputs:
  - {{name: y, type: float64}}
"""


def _diagnostics(name: str, tmp_path: Path) -> list[str]:
    (tmp_path / "model.py").write_text("")
    doc = parse_document(_SPEC.format(name=name), "pyml.yaml")
    try:
        validate_document(doc, tmp_path)
    except SpecError as exc:
        return [f"{d.code} {d.message}" for d in exc.diagnostics]
    return []


def _every_refused_name() -> Iterator[str]:
    yield from sorted(field_names._PROTOBUF_MEMBERS)
    yield from sorted(field_names._STUB_ALIASES)
    yield from sorted(field_names._GENERATED_MESSAGES)
    yield from ("PredictRequestBlock3", "block_2", "block9", "HOUR_FIELD_NUMBER")


@pytest.mark.parametrize("name", list(_every_refused_name()))
def test_every_colliding_name_is_one_spec_error_that_says_why_and_what_to(tmp_path: Path,
                                                                          name: str) -> None:
    [problem] = _diagnostics(name, tmp_path)
    code, message = problem.split(" ", 1)
    if name == "DESCRIPTOR":  # spec.py's reserved words had it already
        assert code == "E110" and "reserved" in message
        return
    assert code == "E209" and "rename it, e.g. '" in message
    suggestion = message.rsplit("'", 2)[1]
    assert _diagnostics(suggestion, tmp_path) == [], suggestion


@pytest.mark.parametrize("name", keyword.kwlist)
def test_python_keywords_are_refused(tmp_path: Path, name: str) -> None:
    [problem] = _diagnostics(name, tmp_path)
    assert problem.startswith("E110") and "reserved" in problem


# --- legal near misses, served --------------------------------------------------------------------

NEAR_MISSES = ["values", "nulls", "has_field", "Clear_", "block", "blocks_1", "data", "shape",
               "hour_FIELD_NUMBER", "self", "descriptor_", "Tensors", "merge_from"]
SPEC = dataframe_spec("adv-names", "Near", [f"{{name: {n}, type: float64}}" for n in NEAR_MISSES],
                      ["{name: total, type: float64}", "{name: values_out, type: float64}"])
MODEL = dataframe_model("Near", """
weights = range(1, len(df.columns) + 1)
total = sum(df[c] * w for c, w in zip(df.columns, weights))
return pd.DataFrame({"total": total, "values_out": df["values"]})
""")


@pytest.fixture(scope="module")
def near(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any]]:
    spec = write_model(tmp_path_factory.mktemp("adv-names"), SPEC, MODEL)
    with serving(build(spec, spec.parent / "generated"), spec,
                 tmp_path_factory.mktemp("names-sock") / "m.sock") as running:
        yield running


def _expected(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows @ np.arange(1, len(NEAR_MISSES) + 1, dtype=float))


def test_near_miss_names_are_served_by_the_typed_service(near: tuple[Server, Any, Any]) -> None:
    server, pb2, pb2_grpc = near
    rows = np.arange(3 * len(NEAR_MISSES), dtype=float).reshape(3, -1)
    request = pb2.PredictRequest()
    for i, name in enumerate(NEAR_MISSES):
        getattr(request, name).values.extend(rows[:, i].tolist())
    assert request.HasField("values") and request.ByteSize() > 0  # the methods still work
    with grpc.insecure_channel(server.unix) as channel:
        reply = pb2_grpc.AdvNamesStub(channel).Predict(request, timeout=30)
    np.testing.assert_allclose(list(reply.total.values), _expected(rows))
    assert list(reply.values_out.values) == rows[:, 0].tolist()


def test_near_miss_names_are_served_over_oip(near: tuple[Server, Any, Any]) -> None:
    server, _, _ = near
    rows = np.arange(2 * len(NEAR_MISSES), dtype=float).reshape(2, -1)
    inputs = []
    for i, name in enumerate(NEAR_MISSES):
        tensor = triton.InferInput(name, [2], "FP64")
        tensor.set_data_from_numpy(rows[:, i].copy())
        inputs.append(tensor)
    result = triton.InferenceServerClient(url=server.unix).infer("adv-names", inputs)
    np.testing.assert_allclose(result.as_numpy("total"), _expected(rows))
