"""Schema evolution rules of ``pymlc.compiler.diff``: one test per rule, in both directions,
plus a check of the wire claims against the protobuf the compiler really generates."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from grpc_tools import protoc

from pymlc.compiler.diff import Change, diff_specs, major_bumped
from pymlc.compiler.lock import EMPTY_LOCK, Lock, LockedMessage, update_lock
from pymlc.compiler.lower import lower
from pymlc.compiler.spec import Spec
from pymlc.runtime_stub.types import COLUMN_TYPES

FRAME: dict[str, Any] = {
    "pyml": 1,
    "name": "fare",
    "version": "1.0.0",
    "model": {"kind": "dataframe", "entrypoint": "model:Fare"},
    "inputs": [
        {"name": "distance", "type": "float64"},
        {"name": "hour", "type": "int32"},
        {"name": "city", "type": "string", "nullable": True},
    ],
    "outputs": [{"name": "fare", "type": "float64"}],
}
TENSOR: dict[str, Any] = {
    "pyml": 1,
    "name": "digits",
    "version": "1.0.0",
    "model": {"kind": "tensor", "entrypoint": "model:Net"},
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 8, 8]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}],
}


def spec(base: dict[str, Any], **edits: Any) -> Spec:
    data = copy.deepcopy(base)
    data.update(edits)
    return Spec.model_validate(data)


def field(base: dict[str, Any], section: str, which: str, **edits: Any) -> Spec:
    """``base`` with the field ``which`` of ``section`` edited (a value None deletes the key)."""
    data = copy.deepcopy(base)
    for item in data[section]:
        if item["name"] == which:
            item.update(edits)
            for key in [k for k, v in item.items() if v is None]:
                del item[key]
    return Spec.model_validate(data)


def added(base: dict[str, Any], section: str, item: dict[str, Any]) -> Spec:
    data = copy.deepcopy(base)
    data[section].append(item)
    return Spec.model_validate(data)


def removed(base: dict[str, Any], section: str, name: str) -> Spec:
    data = copy.deepcopy(base)
    data[section] = [f for f in data[section] if f["name"] != name]
    return Spec.model_validate(data)


def only(changes: list[Change]) -> Change:
    assert len(changes) == 1, changes
    return changes[0]


def kinds(changes: list[Change]) -> set[tuple[str, str, bool]]:
    return {(c.path, c.kind, c.breaking) for c in changes}


# --- inputs and outputs appearing and disappearing -------------------------------------------

def test_input_removed_is_breaking_and_adding_it_back_required_is_too() -> None:
    without = removed(FRAME, "inputs", "hour")
    change = only(diff_specs(spec(FRAME), without))
    assert (change.path, change.kind, change.breaking) == ("inputs.hour", "input-removed", True)
    back = only(diff_specs(without, spec(FRAME)))
    assert (back.path, back.kind, back.breaking) == ("inputs.hour", "input-added", True)


def test_nullable_input_added_is_compatible_and_removing_it_is_breaking() -> None:
    more = added(FRAME, "inputs", {"name": "zone", "type": "int64", "nullable": True})
    change = only(diff_specs(spec(FRAME), more))
    assert (change.kind, change.breaking) == ("input-added", False)
    assert "old callers leave it out and the model sees nulls" in change.message
    assert only(diff_specs(more, spec(FRAME))).kind == "input-removed"
    assert only(diff_specs(more, spec(FRAME))).breaking


def test_required_input_added_is_breaking_and_says_how_to_stay_compatible() -> None:
    more = added(FRAME, "inputs", {"name": "zone", "type": "int64"})
    change = only(diff_specs(spec(FRAME), more))
    assert (change.kind, change.breaking) == ("input-added", True)
    assert "nullable" in change.message


def test_output_added_is_compatible_and_removed_is_breaking() -> None:
    more = added(FRAME, "outputs", {"name": "tip", "type": "float64"})
    assert kinds(diff_specs(spec(FRAME), more)) == {("outputs.tip", "output-added", False)}
    assert kinds(diff_specs(more, spec(FRAME))) == {("outputs.tip", "output-removed", True)}


def test_a_rename_is_a_removal_plus_an_addition() -> None:
    renamed = field(FRAME, "outputs", "fare", name="price")
    assert kinds(diff_specs(spec(FRAME), renamed)) == {
        ("outputs.fare", "output-removed", True), ("outputs.price", "output-added", False)}


# --- column types -----------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new"), [("int32", "int64"), ("int8", "int32"),
                                          ("int16", "int64"), ("int8", "int16")])
def test_input_integer_widening_is_compatible_and_narrowing_is_breaking(old: str,
                                                                        new: str) -> None:
    before, after = field(FRAME, "inputs", "hour", type=old), field(FRAME, "inputs", "hour",
                                                                     type=new)
    change = only(diff_specs(before, after))
    assert (change.path, change.kind, change.breaking) == ("inputs.hour.type", "type-widened",
                                                           False)
    back = only(diff_specs(after, before))
    assert (back.kind, back.breaking) == ("type-changed", True)


def test_input_float_widening_is_compatible_and_narrowing_is_breaking() -> None:
    # float32 travels as double, so old stubs' requests stay valid (see
    # test_wire_claims_hold_for_generated_proto).
    before = field(FRAME, "inputs", "distance", type="float32")
    change = only(diff_specs(before, spec(FRAME)))
    assert (change.kind, change.breaking) == ("type-widened", False)
    assert only(diff_specs(spec(FRAME), before)).breaking


@pytest.mark.parametrize(("old", "new"), [("string", "binary"), ("int64", "float64"),
                                          ("date", "timestamp"), ("bool", "int8")])
def test_input_type_change_that_is_no_widening_is_breaking(old: str, new: str) -> None:
    before, after = field(FRAME, "inputs", "hour", type=old), field(FRAME, "inputs", "hour",
                                                                     type=new)
    assert (only(diff_specs(before, after)).kind, only(diff_specs(before, after)).breaking) == (
        "type-changed", True)
    assert only(diff_specs(after, before)).breaking


@pytest.mark.parametrize(("old", "new"), [("int32", "int64"), ("float32", "float64"),
                                          ("int64", "int32")])
def test_any_output_type_change_is_breaking_widening_included(old: str, new: str) -> None:
    before = field(FRAME, "outputs", "fare", type=old)
    after = field(FRAME, "outputs", "fare", type=new)
    change = only(diff_specs(before, after))
    assert (change.path, change.kind, change.breaking) == ("outputs.fare.type", "type-changed",
                                                           True)
    assert "old type" in change.message


def test_nullable_input_widening_keeps_the_wrapper_compatible() -> None:
    before = field(FRAME, "inputs", "hour", nullable=True)
    after = field(FRAME, "inputs", "hour", nullable=True, type="int64")
    assert kinds(diff_specs(before, after)) == {("inputs.hour.type", "type-widened", False)}


# --- nullability ------------------------------------------------------------------------------

def test_input_made_non_nullable_is_breaking() -> None:
    change = only(diff_specs(spec(FRAME), field(FRAME, "inputs", "city", nullable=False)))
    assert (change.path, change.kind, change.breaking) == ("inputs.city.nullable",
                                                           "made-required", True)
    assert "send nulls" in change.message


def test_input_made_nullable_is_compatible() -> None:
    change = only(diff_specs(spec(FRAME), field(FRAME, "inputs", "hour", nullable=True)))
    assert (change.path, change.kind, change.breaking) == ("inputs.hour.nullable",
                                                           "made-nullable", False)
    assert "stays valid" in change.message


def test_output_made_nullable_is_breaking() -> None:
    change = only(diff_specs(spec(FRAME), field(FRAME, "outputs", "fare", nullable=True)))
    assert (change.kind, change.breaking) == ("made-nullable", True)
    assert "do not expect nulls" in change.message


def test_output_made_non_nullable_is_compatible() -> None:
    before = field(FRAME, "outputs", "fare", nullable=True)
    change = only(diff_specs(before, spec(FRAME)))
    assert (change.kind, change.breaking) == ("made-required", False)


def test_nullable_false_and_absent_are_the_same() -> None:
    assert diff_specs(spec(FRAME), field(FRAME, "inputs", "hour", nullable=False)) == []


# --- tensors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("old", "new"), [("float32", "float64"), ("float64", "float32"),
                                          ("uint8", "int16")])
def test_tensor_dtype_change_is_breaking_in_both_directions(old: str, new: str) -> None:
    before = field(TENSOR, "inputs", "pixels", dtype=old)
    after = field(TENSOR, "inputs", "pixels", dtype=new)
    assert kinds(diff_specs(before, after)) == {("inputs.pixels.dtype", "dtype-changed", True)}
    assert kinds(diff_specs(after, before)) == {("inputs.pixels.dtype", "dtype-changed", True)}
    out_before = field(TENSOR, "outputs", "probabilities", dtype=old)
    out_after = field(TENSOR, "outputs", "probabilities", dtype=new)
    assert only(diff_specs(out_before, out_after)).breaking


def test_input_fixed_dim_relaxed_to_any_is_compatible_and_fixing_it_is_breaking() -> None:
    relaxed = field(TENSOR, "inputs", "pixels", shape=[-1, -1, 8])
    assert kinds(diff_specs(spec(TENSOR), relaxed)) == {
        ("inputs.pixels.shape[1]", "dim-relaxed", False)}
    assert kinds(diff_specs(relaxed, spec(TENSOR))) == {
        ("inputs.pixels.shape[1]", "dim-changed", True)}


def test_output_fixed_dim_relaxed_is_breaking_and_fixing_an_open_one_is_compatible() -> None:
    relaxed = field(TENSOR, "outputs", "probabilities", shape=[-1, -1])
    assert kinds(diff_specs(spec(TENSOR), relaxed)) == {
        ("outputs.probabilities.shape[1]", "dim-changed", True)}
    assert kinds(diff_specs(relaxed, spec(TENSOR))) == {
        ("outputs.probabilities.shape[1]", "dim-fixed", False)}


def test_fixed_dim_changed_is_breaking_for_inputs_and_outputs() -> None:
    for section, name, shape in (("inputs", "pixels", [-1, 8, 9]),
                                 ("outputs", "probabilities", [-1, 11])):
        change = only(diff_specs(spec(TENSOR), field(TENSOR, section, name, shape=shape)))
        assert (change.kind, change.breaking) == ("dim-changed", True)


def test_rank_change_is_breaking() -> None:
    change = only(diff_specs(spec(TENSOR), field(TENSOR, "inputs", "pixels", shape=[-1, 64])))
    assert (change.path, change.kind, change.breaking) == ("inputs.pixels.shape", "rank-changed",
                                                           True)


def test_tensor_input_added_is_breaking_and_output_added_compatible() -> None:
    more_in = added(TENSOR, "inputs", {"name": "mask", "dtype": "bool", "shape": [-1, 8, 8]})
    assert kinds(diff_specs(spec(TENSOR), more_in)) == {("inputs.mask", "input-added", True)}
    more_out = added(TENSOR, "outputs", {"name": "label", "dtype": "int64", "shape": [-1]})
    assert kinds(diff_specs(spec(TENSOR), more_out)) == {("outputs.label", "output-added", False)}


# --- identity and version ---------------------------------------------------------------------

def test_model_kind_change_is_breaking_and_skips_field_level_noise() -> None:
    data = copy.deepcopy(TENSOR)
    data["name"] = FRAME["name"]
    data["inputs"] = [{"name": "distance", "dtype": "float64", "shape": [-1]}]
    data["outputs"] = [{"name": "fare", "dtype": "float64", "shape": [-1]}]
    changes = diff_specs(spec(FRAME), Spec.model_validate(data))
    assert ("model.kind", "kind-changed", True) in kinds(changes)
    assert not [c for c in changes if c.path.endswith((".type", ".dtype", ".shape"))]
    assert kinds(diff_specs(Spec.model_validate(data), spec(FRAME))) >= {
        ("model.kind", "kind-changed", True)}


def test_model_name_change_is_breaking() -> None:
    change = only(diff_specs(spec(FRAME), spec(FRAME, name="fare-v2")))
    assert (change.path, change.kind, change.breaking) == ("name", "name-changed", True)
    assert "pyml.fare_v2.v1" in change.message


@pytest.mark.parametrize("version", ["1.0.1", "1.7.0", "1.0.0-rc.1"])
def test_patch_and_minor_versions_are_compatible(version: str) -> None:
    change = only(diff_specs(spec(FRAME), spec(FRAME, version=version)))
    assert (change.path, change.kind, change.breaking) == ("version", "version-changed", False)
    assert not major_bumped(spec(FRAME), spec(FRAME, version=version))


def test_major_bump_is_reported_as_a_new_service() -> None:
    change = only(diff_specs(spec(FRAME), spec(FRAME, version="2.0.0")))
    assert (change.kind, change.breaking) == ("major-bump", False)
    assert "pyml.fare.v2" in change.message and "new service" in change.message
    assert major_bumped(spec(FRAME), spec(FRAME, version="2.0.0"))


def test_major_version_going_down_is_breaking() -> None:
    change = only(diff_specs(spec(FRAME, version="2.0.0"), spec(FRAME)))
    assert (change.kind, change.breaking) == ("major-lowered", True)
    assert not major_bumped(spec(FRAME, version="2.0.0"), spec(FRAME))


def test_new_model_lists_everything_as_compatible() -> None:
    changes = diff_specs(None, spec(FRAME))
    assert not [c for c in changes if c.breaking]
    assert ("", "model-added", False) in kinds(changes)
    assert ("inputs.hour", "input-added", False) in kinds(changes)
    assert not major_bumped(None, spec(FRAME))


# --- settings that do not touch the API -------------------------------------------------------

@pytest.mark.parametrize(("edits", "path"), [
    ({"description": "new words"}, "description"),
    ({"examples": {"input": "examples/in.json"}}, "examples.input"),
    ({"serving": {"port": 8501, "timeout_ms": 50}}, "serving.port"),
    ({"batch": {"rows_per_batch": 10, "write_mode": "append"}}, "batch.write_mode"),
    ({"image": {"base": "python:3.12-slim"}}, "image.base"),
    ({"model": {"kind": "dataframe", "entrypoint": "other:Fare", "python": "3.12"}},
     "model.entrypoint"),
])
def test_settings_are_compatible(edits: dict[str, Any], path: str) -> None:
    for before, after in ((spec(FRAME), spec(FRAME, **edits)), (spec(FRAME, **edits), spec(FRAME))):
        changes = diff_specs(before, after)
        assert changes and not [c for c in changes if c.breaking]
        assert path in {c.path for c in changes}


def test_a_passthrough_column_removed_is_breaking_and_added_compatible() -> None:
    before = spec(FRAME, batch={"passthrough": ["trip_id", "day"]})
    after = spec(FRAME, batch={"passthrough": ["day", "zone"]})
    assert kinds(diff_specs(before, after)) == {
        ("batch.passthrough.trip_id", "passthrough-removed", True),
        ("batch.passthrough.zone", "passthrough-added", False)}
    assert "readers of the output table" in diff_specs(before, after)[0].message
    swapped = spec(FRAME, batch={"passthrough": ["day", "trip_id"]})
    assert kinds(diff_specs(before, swapped)) == {("batch.passthrough", "setting-changed", False)}
    assert kinds(diff_specs(spec(FRAME), before)) == {
        ("batch.passthrough.day", "passthrough-added", False),
        ("batch.passthrough.trip_id", "passthrough-added", False)}


def test_field_description_and_order_are_compatible() -> None:
    data = copy.deepcopy(FRAME)
    data["inputs"] = [data["inputs"][1], data["inputs"][0], data["inputs"][2]]
    data["inputs"][0]["description"] = "Hour of pickup"
    assert kinds(diff_specs(spec(FRAME), Spec.model_validate(data))) == {
        ("inputs", "order-changed", False), ("inputs.hour.description", "description-changed",
                                             False)}


# --- field numbers (pyml.lock) ----------------------------------------------------------------

def lock_of(base: Spec, inputs: dict[str, int] | None = None) -> Lock:
    fresh = update_lock(EMPTY_LOCK, [f.name for f in base.inputs], [f.name for f in base.outputs])
    if inputs is None:
        return fresh
    return Lock(LockedMessage(tuple(sorted(inputs.items(), key=lambda i: i[1])), ()),
                fresh.outputs)


def test_field_number_changed_in_the_lock_is_breaking() -> None:
    s = spec(FRAME)
    old = lock_of(s)
    new = lock_of(s, {"distance": 1, "hour": 5, "city": 3})
    assert kinds(diff_specs(s, s, old_lock=old, new_lock=new)) == {
        ("inputs.hour", "number-changed", True)}
    assert diff_specs(s, s, old_lock=old, new_lock=old) == []


def test_field_number_reused_by_another_field_is_breaking() -> None:
    before = spec(FRAME)
    old = lock_of(before)  # distance 1, hour 2, city 3
    after = field(FRAME, "inputs", "hour", name="hour_of_day")
    # A lock regenerated from scratch hands hour's number 2 to the new name.
    new = lock_of(after, {"distance": 1, "hour_of_day": 2, "city": 3})
    assert ("inputs.hour_of_day", "number-reused", True) in kinds(
        diff_specs(before, after, old_lock=old, new_lock=new))
    # The real lock retires 2 and gives the new field 4: only the rename shows.
    kept = update_lock(old, [f.name for f in after.inputs], [f.name for f in after.outputs])
    assert kinds(diff_specs(before, after, old_lock=old, new_lock=kept)) == {
        ("inputs.hour", "input-removed", True), ("inputs.hour_of_day", "input-added", True)}


def test_without_both_locks_numbers_are_not_compared() -> None:
    s = spec(FRAME)
    assert diff_specs(s, s, old_lock=lock_of(s), new_lock=None) == []
    assert diff_specs(s, s, old_lock=None, new_lock=lock_of(s, {"hour": 9})) == []


def test_changes_are_sorted_and_deterministic() -> None:
    data = copy.deepcopy(FRAME)
    data["inputs"] = [{"name": n, "type": "int32"} for n in ("b", "a", "c")]
    old = Spec.model_validate(data)
    data["inputs"] = [{"name": "z", "type": "int32"}]
    data["serving"] = {"port": 1234}
    changes = diff_specs(old, Spec.model_validate(data))
    assert changes == sorted(changes)
    assert [c.path for c in changes] == ["inputs.a", "inputs.b", "inputs.c", "inputs.z",
                                         "serving.port"]


# --- the wire claims, checked against the proto the compiler generates -------------------------

def message_class(proto: str, tmp: Path, name: str) -> Any:
    """PredictRequest/PredictResponse of a generated proto, in a descriptor pool of its own."""
    tmp.mkdir()
    (tmp / "m.proto").write_text(proto)
    out = tmp / "m.pb"
    assert protoc.main(["protoc", f"-I{tmp}", f"--descriptor_set_out={out}", "m.proto"]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    package = files[0].package
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


def proto_of(s: Spec) -> str:
    lock = update_lock(EMPTY_LOCK, [f.name for f in s.inputs], [f.name for f in s.outputs])
    return lower(s, lock, spec_file="pyml.yaml", spec_sha256="0", pymlc_version="0").proto


def values(message: Any, name: str) -> list[Any]:
    value = getattr(message, name)
    return list(value.values) if hasattr(value, "values") else list(value)


def fill(message: Any, name: str, data: list[Any]) -> None:
    value = getattr(message, name)
    (value.values if hasattr(value, "values") else value).extend(data)


WIDENINGS = [(old, new) for old, row in COLUMN_TYPES.items() for new in row.widens_to]


@pytest.mark.parametrize(("old", "new"), WIDENINGS)
def test_every_widening_of_the_type_table_keeps_the_wire(tmp_path: Path, old: str,
                                                         new: str) -> None:
    before = field(FRAME, "inputs", "hour", nullable=None, type=old)
    after = field(FRAME, "inputs", "hour", nullable=None, type=new)
    old_cls = message_class(proto_of(before), tmp_path / "old", "PredictRequest")
    new_cls = message_class(proto_of(after), tmp_path / "new", "PredictRequest")
    sent = old_cls()
    fill(sent, "hour", [1, -2])
    assert values(new_cls.FromString(sent.SerializeToString()), "hour") == [1, -2]
    assert not only(diff_specs(before, after)).breaking


@pytest.mark.parametrize(("section", "old_edits", "new_edits"), [
    ("inputs", {"type": "int32"}, {"type": "int64"}),
    ("inputs", {"type": "int8"}, {"type": "int32"}),
    ("inputs", {"type": "int32", "nullable": True}, {"type": "int64", "nullable": True}),
    ("inputs", {"type": "float32"}, {"type": "float64"}),
    ("inputs", {"type": "int32"}, {"type": "int32", "nullable": True}),
    ("outputs", {"type": "int32", "nullable": True}, {"type": "int32"}),
])
def test_wire_claims_hold_for_generated_proto(tmp_path: Path, section: str,
                                              old_edits: dict[str, Any],
                                              new_edits: dict[str, Any]) -> None:
    name = "hour" if section == "inputs" else "fare"
    before = field(FRAME, section, name, **{"nullable": None, **old_edits})
    after = field(FRAME, section, name, **{"nullable": None, **new_edits})
    message = "PredictRequest" if section == "inputs" else "PredictResponse"
    old_cls = message_class(proto_of(before), tmp_path / "old", message)
    new_cls = message_class(proto_of(after), tmp_path / "new", message)
    sent = old_cls()
    fill(sent, name, [1, 2])
    try:
        received = values(new_cls.FromString(sent.SerializeToString()), name)
    except DecodeError:
        received = None
    compatible = not only(diff_specs(before, after)).breaking
    assert compatible == (received == [1, 2]), (received, diff_specs(before, after))
