"""``pyml.lock``: protobuf field numbers survive spec edits and are never reused.

Every test edits a real spec in a temporary folder, runs a real ``pymlc build`` and reads the
lock and the proto it wrote; the proto is compiled by protoc and inspected as a descriptor.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from pymlc.cli import main
from pymlc.compiler.lock import EMPTY_LOCK, update_lock
from pymlc.runtime_stub.wire import BLOCK_FIELDS, block_numbers, block_of

MODEL = '''from pymlc import DataFrameModel


class Model(DataFrameModel):
    def __init__(self, artifacts):
        pass

    def predict(self, df):
        return df[["y"]]
'''


def _write_spec(folder: Path, inputs: list[str], outputs: tuple[str, ...] = ("y",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(MODEL, encoding="utf-8")
    lines = ["pyml: 1", "name: locked", "version: 1.0.0", "model:", "  kind: dataframe",
             "  entrypoint: model:Model", "inputs:"]
    lines += [f"  - {{name: {name}, type: float64}}" for name in inputs]
    lines += ["outputs:"] + [f"  - {{name: {name}, type: float64}}" for name in outputs]
    spec = folder / "pyml.yaml"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return spec


def _build(spec: Path) -> dict[str, dict[str, object]]:
    assert main(["build", str(spec)]) == 0
    lock: dict[str, dict[str, object]] = json.loads(
        (spec.parent / "pyml.lock").read_text(encoding="utf-8"))
    return lock


def _request(spec: Path) -> descriptor_pb2.DescriptorProto:
    """PredictRequest as protoc compiled it from the generated proto."""
    proto_dir = spec.parent / "generated" / "proto"
    (proto,) = proto_dir.glob("*.proto")
    out = spec.parent / "descriptor.pb"
    assert protoc.main(["protoc", f"-I{proto_dir}", f"--descriptor_set_out={out}",
                        str(proto)]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (message,) = [m for m in files.file[0].message_type if m.name == "PredictRequest"]
    return message


def _numbers(message: descriptor_pb2.DescriptorProto) -> dict[str, int]:
    return {f.name: f.number for f in message.field}


def _reserved(message: descriptor_pb2.DescriptorProto) -> tuple[list[int], list[str]]:
    numbers = [n for r in message.reserved_range for n in range(r.start, r.end)]
    return numbers, list(message.reserved_name)


def test_first_build_numbers_fields_in_spec_order(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["b", "a", "c"])
    lock = _build(spec)
    assert lock == {
        "pyml_lock": 1,
        "inputs": {"fields": {"a": 2, "b": 1, "c": 3}, "reserved": []},
        "outputs": {"fields": {"y": 1}, "reserved": []},
    }
    assert _numbers(_request(spec)) == {"b": 1, "a": 2, "c": 3}
    assert _reserved(_request(spec)) == ([], [])


def test_removing_and_adding_columns_keeps_the_other_numbers(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b", "c", "d"])
    _build(spec)
    _write_spec(tmp_path, ["d", "new", "a", "c"])  # b removed, new added, order changed
    lock = _build(spec)
    assert lock["inputs"] == {"fields": {"a": 1, "c": 3, "d": 4, "new": 5},
                              "reserved": [{"name": "b", "number": 2}]}
    request = _request(spec)
    assert _numbers(request) == {"d": 4, "new": 5, "a": 1, "c": 3}
    assert [f.name for f in request.field] == ["d", "new", "a", "c"]  # spec order on the wire


def test_a_removed_field_is_reserved_by_number_and_name(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b", "c"])
    _build(spec)
    _write_spec(tmp_path, ["a", "c"])
    _build(spec)
    proto = next((tmp_path / "generated" / "proto").glob("*.proto")).read_text(encoding="utf-8")
    request = proto[proto.index("message PredictRequest"):proto.index("message PredictResponse")]
    assert "  reserved 2;\n" in request
    assert '  reserved "b";\n' in request
    assert _reserved(_request(spec)) == ([2], ["b"])


def test_numbers_are_never_reused(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b"])
    _build(spec)
    _write_spec(tmp_path, ["a"])
    _build(spec)
    _write_spec(tmp_path, ["a", "c"])  # remove b, then add c: c must not get b's number 2
    lock = _build(spec)
    assert lock["inputs"] == {"fields": {"a": 1, "c": 3},
                              "reserved": [{"name": "b", "number": 2}]}
    assert _numbers(_request(spec)) == {"a": 1, "c": 3}
    assert _reserved(_request(spec)) == ([2], ["b"])


def test_removing_the_highest_number_still_retires_it(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b"])
    _build(spec)
    _write_spec(tmp_path, ["a"])
    _build(spec)
    _write_spec(tmp_path, ["a", "z"])
    assert _build(spec)["inputs"]["fields"] == {"a": 1, "z": 3}


def test_readding_a_removed_name_gets_a_fresh_number(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b"])
    _build(spec)
    _write_spec(tmp_path, ["a"])
    _build(spec)
    _write_spec(tmp_path, ["a", "b"])
    lock = _build(spec)
    assert lock["inputs"] == {"fields": {"a": 1, "b": 3},
                              "reserved": [{"name": "b", "number": 2}]}
    request = _request(spec)  # compiles: "b" is in use again, so it is no longer reserved
    assert _numbers(request) == {"a": 1, "b": 3}
    assert _reserved(request) == ([2], [])
    # Removed a second time, both of its numbers stay retired and the name is reserved again.
    _write_spec(tmp_path, ["a"])
    lock = _build(spec)
    assert lock["inputs"] == {"fields": {"a": 1}, "reserved": [{"name": "b", "number": 2},
                                                               {"name": "b", "number": 3}]}
    assert _reserved(_request(spec)) == ([2, 3], ["b"])


def test_outputs_have_their_own_numbers(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a"], outputs=("y", "z"))
    _build(spec)
    _write_spec(tmp_path, ["a"], outputs=("z",))
    lock = _build(spec)
    assert lock["outputs"] == {"fields": {"z": 2}, "reserved": [{"name": "y", "number": 1}]}
    assert lock["inputs"] == {"fields": {"a": 1}, "reserved": []}


def test_rebuilding_leaves_the_lock_untouched(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, ["a", "b"])
    _build(spec)
    before = (tmp_path / "pyml.lock").read_bytes()
    _build(spec)
    assert (tmp_path / "pyml.lock").read_bytes() == before


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "Expecting property name"),
    ('{"pyml_lock": 2, "inputs": {}, "outputs": {}}', "unsupported lock format 2"),
    ('{"pyml_lock": 1, "inputs": {"fields": {}, "reserved": []}}', "'outputs'"),
    ('{"pyml_lock": 1, "inputs": {"fields": {"a": 1, "b": 1}, "reserved": []},'
     ' "outputs": {"fields": {"y": 1}, "reserved": []}}', "a field number appears twice"),
    ('{"pyml_lock": 1, "inputs": {"fields": {"a": 0}, "reserved": []},'
     ' "outputs": {"fields": {"y": 1}, "reserved": []}}', "field number 0 is not an integer"),
    ('{"pyml_lock": 1, "inputs": {"fields": {"a": "1"}, "reserved": []},'
     ' "outputs": {"fields": {"y": 1}, "reserved": []}}', "field number '1' is not an integer"),
    ('{"pyml_lock": 1, "inputs": {"fields": {"a": 19500}, "reserved": []},'
     ' "outputs": {"fields": {"y": 1}, "reserved": []}}', "reserved 19000..19999"),
    ("[]", "not a valid lock file"),
])
def test_a_corrupt_lock_is_a_clean_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              content: str, reason: str) -> None:
    spec = _write_spec(tmp_path, ["a"])
    (tmp_path / "pyml.lock").write_text(content, encoding="utf-8")
    assert main(["build", str(spec)]) == 1
    stderr = capsys.readouterr().err
    # The lock is named as the CLI shows paths (relative below the working folder, else
    # absolute), so match its tail: this test's folder and the file.
    flat = stderr.replace("\n", " ")
    assert f"{tmp_path.name}/pyml.lock: error[E401]: not a valid lock file" in flat
    assert reason in stderr and "restore it from version control" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "generated").exists()
    assert (tmp_path / "pyml.lock").read_text(encoding="utf-8") == content  # left for repair


def test_numbering_skips_protobufs_reserved_range(tmp_path: Path) -> None:
    # Numbers are never reused: a wide spec whose columns are renamed walks past 19000, where
    # protoc refuses fields (19000..19999 are its own).
    spec = _write_spec(tmp_path, ["a", "b"])
    lock = _build(spec)
    lock["inputs"]["fields"] = {"a": 18999}
    lock["inputs"]["reserved"] = [{"name": "old", "number": 20001}]
    (tmp_path / "pyml.lock").write_text(json.dumps(lock), encoding="utf-8")
    assert _build(spec)["inputs"]["fields"] == {"a": 18999, "b": 20002}
    lock["inputs"]["reserved"] = []
    (tmp_path / "pyml.lock").write_text(json.dumps(lock), encoding="utf-8")
    assert _build(spec)["inputs"]["fields"] == {"a": 18999, "b": 20000}
    assert _numbers(_request(spec)) == {"a": 18999, "b": 20000}  # protoc accepts them


def test_a_wide_message_fills_blocks_and_no_field_ever_moves() -> None:
    # protobuf's Python runtime cannot load a message of ~8,000 message fields: beyond
    # BLOCK_FIELDS, fields get numbers of block 1, 2, ... (runtime_stub.wire).
    names = [f"c{i}" for i in range(BLOCK_FIELDS + 2)]
    lock = update_lock(EMPTY_LOCK, names, ["y"])
    numbers = dict(lock.inputs.fields)
    assert [block_of(numbers[n]) for n in names] == [0] * BLOCK_FIELDS + [1, 1]
    assert numbers["c4999"] == BLOCK_FIELDS and numbers["c5000"] == block_numbers(1).start
    # Removing a field of block 0 makes room there; the new field goes there, on a fresh
    # number, and every other field keeps its number (and so its block).
    later = update_lock(lock, [n for n in names if n != "c7"] + ["new"], ["y"])
    moved = {n for n, number in later.inputs.fields if numbers.get(n, number) != number}
    assert not moved and later.inputs.number("new") == BLOCK_FIELDS + 1
    assert ("c7", 8) in later.inputs.reserved
    again = update_lock(later, [n for n, _ in later.inputs.fields] + ["newer"], ["y"])
    assert again.inputs.number("newer") == block_numbers(1).start + 2
