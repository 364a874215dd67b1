"""The contract checks and the Predictor, in-process: safe casts only, nulls, shapes, outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_support import SPECS, build

from pymlc.runtime_stub.checks import (
    DecodedObjects,
    InputError,
    OutputError,
    check_output_columns,
    check_output_tensors,
    column_specs,
    conform_columns,
    conform_tensors,
    tensor_specs,
)
from pymlc.runtime_stub.codecs import decoded_objects
from pymlc.runtime_stub.config import FieldConfig, ModelConfig
from pymlc.runtime_stub.predict import Predictor
from pymlc.runtime_stub.types import COLUMN_TYPES, OIP_DATATYPES, TENSOR_DTYPES


def _col(name: str, type_: str, nullable: bool = False) -> FieldConfig:
    return FieldConfig(name, 1, type_, nullable, None)


def _conform(type_: str, values: Any, nullable: bool = False) -> Any:
    frame = conform_columns({"c": values}, column_specs([_col("c", type_, nullable)]))
    return frame["c"]


def _refused(type_: str, values: Any, nullable: bool = False) -> str:
    with pytest.raises(InputError) as caught:
        _conform(type_, values, nullable)
    assert all(p.startswith("c: ") for p in caught.value.problems)
    return str(caught.value)


def test_every_table_row_has_the_runtime_columns() -> None:
    assert all(row.family and row.proto_numpy for row in COLUMN_TYPES.values())
    assert all(row.family for row in TENSOR_DTYPES.values())
    oip = {row.oip for row in (*COLUMN_TYPES.values(), *TENSOR_DTYPES.values())}
    assert oip <= set(OIP_DATATYPES)


@pytest.mark.parametrize(("type_", "values", "dtype"), [
    ("int64", np.array([1, 2], dtype=np.int32), "int64"),         # table widening
    ("int8", np.array([1, -128, 127], dtype=np.int64), "int8"),   # narrowing, every value fits
    ("int32", np.array([7], dtype=np.uint16), "int32"),
    ("float64", np.array([0.5], dtype=np.float32), "float64"),
    ("float32", np.array([0.5, np.inf]), "float32"),              # exact in float32
    ("int32", pd.array([1, 2], dtype="Int64"), "int32"),           # masked, no nulls
    ("string", pd.array(["a", "b"], dtype="string"), "object"),
    ("string", np.array(["a", "b"]), "object"),
    ("bool", np.array([True]), "bool"),
    ("timestamp", np.array(["2024-01-01T10:00:00"], dtype="datetime64[ns]"), "datetime64[us]"),
    ("date", np.array(["2024-01-01"], dtype="datetime64[ms]"), "datetime64[s]"),
])
def test_lossless_conversions_are_applied(type_: str, values: Any, dtype: str) -> None:
    column = _conform(type_, values)
    assert str(column.dtype) == dtype
    assert len(column) == len(values)


@pytest.mark.parametrize(("type_", "values", "message"), [
    ("int32", np.array([1.0, 2.0]), "expected int32, got float64"),      # float -> int: never
    ("int8", np.array([1, 300]), "values 1..300 do not fit in int8"),
    ("int64", np.array([2**63], dtype=np.uint64), "do not fit in int64"),
    ("float32", np.array([0.1]), "do not all convert exactly to float32"),
    ("float64", np.array(["1.5"], dtype=object), "got values of kind 'string'"),
    ("string", np.array([1, "a"], dtype=object), "got values of kind 'mixed-integer'"),
    ("bool", np.array([0, 1]), "expected bool, got int64"),
    ("date", np.array(["2024-01-01T10:00"], dtype="datetime64[m]"), "not all whole days"),
    ("timestamp", np.array([1], dtype="datetime64[ns]"), "not all microseconds"),
])
def test_unsafe_conversions_are_refused(type_: str, values: Any, message: str) -> None:
    assert message in _refused(type_, values)


def test_nulls_only_where_nullable() -> None:
    assert "1 null value(s), but the column is not nullable" in \
        _refused("string", np.array(["a", None], dtype=object))
    assert "not nullable" in _refused("int32", pd.array([1, None], dtype="Int32"))
    assert "not nullable" in _refused("date", np.array(["2024-01-01", "NaT"], "datetime64[D]"))
    column = _conform("int32", pd.array([1, None], dtype="Int64"), nullable=True)
    assert str(column.dtype) == "Int32" and column.isna().tolist() == [False, True]
    floats = _conform("float64", pd.array([1.5, None], dtype="Float64"), nullable=True)
    assert floats.dtype == np.float64 and np.isnan(floats[1])
    assert _conform("string", np.array([None, None], dtype=object), nullable=True).isna().all()
    flags = _conform("bool", np.array([True, False]), nullable=True)
    assert str(flags.dtype) == "boolean"


def test_text_nulls_from_anywhere_but_a_decoder_are_found_by_walking() -> None:
    # Only a decoder's DecodedObjects skips the walk; NaN and NA in a plain object array
    # (pandas readers, `pymlc predict`, the batch path) are still nulls.
    for null in (None, np.nan, pd.NA, float("nan")):
        assert "1 null value(s), but the column is not nullable" in \
            _refused("string", np.array(["a", null], dtype=object))
        assert _conform("string", np.array(["a", null], dtype=object), nullable=True)\
            .tolist() == ["a", None]


@pytest.mark.parametrize("type_", ["string", "binary"])
@pytest.mark.parametrize("nullable", [False, True])
@pytest.mark.parametrize("flags", [None, [False, False], [False, True]])
def test_decoded_text_conforms_as_the_same_values_walked(type_: str, nullable: bool,
                                                         flags: list[bool] | None) -> None:
    text, empty = ("a", "") if type_ == "string" else (b"a", b"")
    wire = np.array([text, empty], dtype=object)  # a null travels as the empty value
    decoded = decoded_objects(wire, None if flags is None else np.array(flags), type_)
    walked = np.array([text, None if flags and flags[1] else empty], dtype=object)
    if flags and flags[1] and not nullable:
        assert _refused(type_, decoded, nullable) == _refused(type_, walked, nullable)
    else:
        assert _conform(type_, decoded, nullable).tolist() == \
            _conform(type_, walked, nullable).tolist() == walked.tolist()


def test_decoded_objects_of_another_family_are_walked() -> None:
    bytes_for_text = DecodedObjects(np.array([b"a"], dtype=object), None, "binary")
    assert "expected string, got values of kind 'binary'" in _refused("string", bytes_for_text)
    assert "expected float64, got values of kind 'binary'" in _refused("float64", bytes_for_text)


def test_frame_problems_are_all_listed_with_their_columns() -> None:
    specs = column_specs([_col("a", "int32"), _col("b", "string"), _col("c", "float64")])
    with pytest.raises(InputError) as caught:
        conform_columns({"a": np.array([1.5]), "c": np.array([1.0, 2.0]), "z": np.ones(2)},
                        specs)
    problems = caught.value.problems
    assert "z: unexpected input column (the spec has no such input)" in problems
    assert "b: missing input column (string)" in problems
    assert any(p.startswith("a: expected int32") for p in problems)


def test_extra_columns_of_a_dataframe_passed_as_the_mapping_are_refused() -> None:
    # One row, three columns: the check counts the frame's columns, not its rows.
    frame = pd.DataFrame({"a": np.ones(1, np.int32), "b": [1], "c": [2]})
    with pytest.raises(InputError) as caught:
        conform_columns(frame, column_specs([_col("a", "int32")]))
    assert [p.split(":")[0] for p in caught.value.problems] == ["b", "c"]


def test_frames_of_different_lengths_are_refused() -> None:
    specs = column_specs([_col("a", "int32"), _col("b", "int32")])
    with pytest.raises(InputError, match="different lengths"):
        conform_columns({"a": np.ones(2, np.int32), "b": np.ones(3, np.int32)}, specs)


def test_output_checks_blame_the_model() -> None:
    specs = column_specs([_col("y", "float64")])
    with pytest.raises(OutputError, match="2 rows for 3 input rows"):
        check_output_columns(pd.DataFrame({"y": [1.0, 2.0]}), specs, 3)
    with pytest.raises(OutputError, match="returned list"):
        check_output_columns([1.0], specs, 1)
    with pytest.raises(OutputError, match="y: expected float64, got values of kind 'string'"):
        check_output_columns(pd.DataFrame({"y": ["a"]}), specs, 1)
    out = check_output_columns(pd.DataFrame({"y": np.ones(2, np.float32)}, index=[5, 6]),
                               specs, 2)
    assert out["y"].dtype == np.float64 and list(out.index) == [0, 1]


def _tensor(shape: tuple[int, ...], dtype: str = "float32") -> FieldConfig:
    return FieldConfig("t", 1, dtype, False, shape)


@pytest.mark.parametrize(("array", "problem"), [
    (np.zeros((2, 3), np.float32), "shape [2, 3] does not match [-1, 8]"),
    (np.zeros((2, 8, 1), np.float32), "shape [2, 8, 1] does not match [-1, 8]"),
    (np.zeros((2, 8), np.int64), "expected dtype float32, got int64"),
    (np.full((1, 8), 0.1), "do not all convert exactly to float32"),
])
def test_tensor_problems(array: np.ndarray, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        conform_tensors({"t": array}, tensor_specs([_tensor((-1, 8))]))
    (only,) = caught.value.problems
    assert only.startswith("t: ") and problem in only


@pytest.mark.parametrize(("shape", "array", "fits"), [
    ((-1,), np.zeros(3, np.float32), True),
    ((-1,), np.float32(1.0), False),  # 0-d: the tail () matches, the rank does not
    ((-1, 8), np.zeros((0, 8), np.float32), True),
    ((-1, 8), np.zeros(8, np.float32), False),
    ((4, -1), np.zeros((4, 2), np.float32), True),  # a wildcard elsewhere: the slow path
    ((4, -1), np.zeros((2, 4), np.float32), False),
    ((-1, -1), np.zeros((5, 7), np.float32), True),
    ((2, 3), np.zeros((2, 3), np.float32), True),
    ((2, 3), np.zeros((3, 2), np.float32), False),
])
def test_tensor_shapes_with_and_without_wildcards(shape: tuple[int, ...], array: np.ndarray,
                                                   fits: bool) -> None:
    specs = tensor_specs([_tensor(shape)])
    if fits:
        assert conform_tensors({"t": array}, specs)["t"].shape == array.shape
    else:
        with pytest.raises(InputError, match=r"t: shape .* does not match"):
            conform_tensors({"t": array}, specs)


def test_tensor_names_extra_and_missing_reported_together() -> None:
    specs = tensor_specs([_tensor((-1, 8))])
    with pytest.raises(InputError) as caught:
        conform_tensors({"t": np.zeros((1, 8), np.float32), "u": 1, "v": 2}, specs)
    assert list(caught.value.problems) == [
        "u: unexpected input tensor (the spec has no such input)",
        "v: unexpected input tensor (the spec has no such input)"]
    with pytest.raises(OutputError) as failed:
        check_output_tensors({"u": np.zeros(1)}, specs)
    assert [p.split(":")[0] for p in failed.value.problems] == ["u", "t"]
    listed = conform_tensors({"t": [[0.5] * 8]}, specs)["t"]  # not an array yet: converted
    assert listed.dtype == np.float32 and listed.shape == (1, 8)


def test_tensor_safe_casts_and_wildcards() -> None:
    specs = tensor_specs([_tensor((-1, 8), "float64")])
    out = conform_tensors({"t": np.ones((0, 8), np.float16)}, specs)
    assert out["t"].dtype == np.float64 and out["t"].shape == (0, 8)
    ints = conform_tensors({"t": np.ones((1, 2), np.int64)},
                           tensor_specs([_tensor((1, 2), "uint8")]))
    assert ints["t"].dtype == np.uint8
    readonly = np.frombuffer(np.ones(8, np.float32).tobytes(), np.float32).reshape(1, 8)
    assert conform_tensors({"t": readonly}, tensor_specs([_tensor((-1, 8))]))["t"] is readonly
    with pytest.raises(OutputError, match="t: missing output tensor"):
        check_output_tensors({}, specs)
    with pytest.raises(OutputError, match="expected a dict"):
        check_output_tensors(np.ones(1), specs)


@pytest.fixture(scope="module")
def fare(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    generated = build(SPECS / "fare-estimator", tmp_path_factory.mktemp("fare"))
    return Predictor(ModelConfig.load(generated / "model.json"), SPECS / "fare-estimator")


def test_predictor_scores_the_examples_from_a_pandas_frame(fare: Predictor) -> None:
    frame = pd.read_json(SPECS / "fare-estimator" / "examples" / "input.json")  # int64 columns
    expected = json.loads((SPECS / "fare-estimator" / "examples" / "output.json").read_text())
    out = fare.predict_frame(frame.iloc[::-1].set_index(np.arange(8) + 100))
    assert list(out.columns) == ["fare"] and list(out.index) == list(range(8))
    np.testing.assert_allclose(out["fare"], [r["fare"] for r in expected][::-1], rtol=1e-9)


def test_predictor_refuses_extra_columns_and_skips_empty_frames(fare: Predictor) -> None:
    frame = pd.read_json(SPECS / "fare-estimator" / "examples" / "input.json")
    with pytest.raises(InputError, match="trip_id: unexpected input column"):
        fare.predict_frame(frame.assign(trip_id=1))
    empty = fare.predict_frame(frame.iloc[:0])
    assert list(empty.columns) == ["fare"] and len(empty) == 0
    with pytest.raises(TypeError, match="is a dataframe model; call predict_frame"):
        fare.predict_tensors({})


def test_predictor_refuses_duplicate_columns(fare: Predictor, tmp_path: Path) -> None:
    frame = pd.read_json(SPECS / "fare-estimator" / "examples" / "input.json")
    doubled = pd.concat([frame, frame[["city"]]], axis=1)
    with pytest.raises(InputError, match="city: duplicate input column"):
        fare.predict_frame(doubled)


# --- row-wise problems: ContractError.rows ----------------------------------------------------

def test_contract_errors_keep_their_one_argument_form() -> None:
    error = InputError(["a: missing input column (int32)"])
    assert error.problems == ("a: missing input column (int32)",) and dict(error.rows) == {}
    with_rows = OutputError(["y: bad"], {"y": [3, 1]})
    assert dict(with_rows.rows) == {"y": (3, 1)} and str(with_rows) == "y: bad"
    with pytest.raises(TypeError):
        with_rows.rows["z"] = (1,)  # type: ignore[index]


def _rows(type_: str, values: Any, nullable: bool = False) -> tuple[str, dict[str, Any]]:
    with pytest.raises(InputError) as caught:
        _conform(type_, values, nullable)
    return str(caught.value), dict(caught.value.rows)


@pytest.mark.parametrize(("type_", "values", "rows", "message"), [
    ("string", np.array(["a", None, "b", None], dtype=object), (1, 3),
     "2 null value(s), but the column is not nullable (rows 1, 3)"),
    ("int32", pd.array([None, 1, 2], dtype="Int64"), (0,), "(row 0)"),
    ("int8", np.array([1, 300, -2, -200]), (1, 3), "values -200..300 do not fit in int8"),
    ("float32", np.array([0.5, 0.1, 0.25]), (1,), "do not all convert exactly to float32"),
    ("date", np.array(["2024-01-01", "2024-01-02T10:00", "NaT"], "datetime64[m]"), (1,),
     "not all whole days"),
])
def test_row_wise_problems_name_every_row(type_: str, values: Any, rows: tuple[int, ...],
                                          message: str) -> None:
    text, found = _rows(type_, values, nullable=type_ == "date")
    assert found == {"c": rows} and message in text


def test_the_message_shows_the_first_rows_and_the_mapping_holds_all() -> None:
    values = np.array([None if i % 3 == 0 else "x" for i in range(3000)], dtype=object)
    text, found = _rows("string", values)
    assert found == {"c": tuple(range(0, 3000, 3))}
    assert text.endswith("(rows 0, 3, 6, 9, 12 and 995 more)")


def test_problems_that_are_not_row_wise_have_no_rows() -> None:
    specs = column_specs([_col("a", "int32"), _col("b", "string")])
    with pytest.raises(InputError) as caught:
        conform_columns({"a": np.array([1.5]), "z": np.ones(1)}, specs)
    assert dict(caught.value.rows) == {}
    with pytest.raises(InputError) as mixed:
        conform_columns({"a": np.array([1, 2**40]), "b": np.array(["x", None], object)}, specs)
    assert dict(mixed.value.rows) == {"a": (1,), "b": (1,)}


def test_tensor_rows_are_samples() -> None:
    specs = tensor_specs([_tensor((-1, 2), "int8")])
    with pytest.raises(InputError) as caught:
        conform_tensors({"t": np.array([[1, 2], [3, 4], [5, 500], [600, 0]])}, specs)
    assert dict(caught.value.rows) == {"t": (2, 3)} and "(rows 2, 3)" in str(caught.value)


# --- NaN is null --------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [
    np.array([1.0, np.nan, 2.0, np.nan]),                       # the hot path: the spec's dtype
    np.array([1.0, np.nan, 2.0, np.nan], dtype=np.float32),     # widened to float64
    np.array([1.0, float("nan"), 2.0, None], dtype=object),     # pandas readers, JSON
    pd.array([1.0, None, 2.0, None], dtype="Float64"),          # masked nulls
])
def test_nan_in_a_non_nullable_float_input_is_refused_as_a_null(values: Any) -> None:
    text, found = _rows("float64", values)
    assert found == {"c": (1, 3)}
    assert "c: 2 null or NaN value(s), but the column is not nullable (rows 1, 3)" in text


def test_nan_in_a_nullable_float_column_is_a_null_and_inf_is_a_value() -> None:
    nullable = _conform("float64", np.array([np.nan, 1.0, np.inf]), nullable=True)
    assert np.isnan(nullable[0]) and nullable.isna().tolist() == [True, False, False]
    assert _conform("float32", np.array([np.inf, -np.inf]), nullable=False).tolist() == \
        [np.inf, -np.inf]
    # inf - inf is NaN: the check must neither refuse nor warn about what holds no NaN.
    assert _conform("float64", np.array([np.inf, -np.inf, 1.0])).tolist()[:2] == \
        [np.inf, -np.inf]


def test_nan_in_a_non_nullable_float_output_is_the_models_fault() -> None:
    specs = column_specs([_col("y", "float64")])
    with pytest.raises(OutputError) as caught:
        check_output_columns(pd.DataFrame({"y": [1.0, np.nan]}), specs, 2)
    assert "y: 1 null or NaN value(s), but the column is not nullable (row 1)" in \
        str(caught.value) and dict(caught.value.rows) == {"y": (1,)}


# --- a nullable input left out is null in every row ---------------------------------------------

@pytest.mark.parametrize(("type_", "null"), [
    ("float64", "nan"), ("float32", "nan"), ("int8", "<NA>"), ("bool", "<NA>"),
    ("string", "None"), ("binary", "None"), ("date", "NaT"), ("timestamp", "NaT"),
])
def test_a_left_out_nullable_input_is_all_null(type_: str, null: str) -> None:
    specs = column_specs([_col("a", "int32"), _col("c", type_, nullable=True),
                          _col("d", "float64")])
    frame = conform_columns({"d": np.zeros(2), "a": np.ones(2, np.int32)}, specs)
    assert list(frame.columns) == ["a", "c", "d"]  # spec order, as always
    given = conform_columns({"a": np.ones(2, np.int32), "c": np.array([None, None], object),
                             "d": np.zeros(2)}, specs)
    assert frame["c"].dtype == given["c"].dtype  # as if the client had sent two nulls
    assert [str(v) for v in frame["c"].tolist()] == [null, null]


def test_a_left_out_nullable_input_needs_another_input_for_the_row_count() -> None:
    only = column_specs([_col("c", "float64", nullable=True)])
    with pytest.raises(InputError) as caught:
        conform_columns({}, only)
    assert caught.value.problems == (
        "c: missing input column (float64, nullable); a nullable input may be left out (it is"
        " then null in every row) only beside an input that gives the row count",)
    specs = column_specs([_col("a", "int32"), _col("c", "float64", nullable=True)])
    assert len(conform_columns({"a": np.ones(0, np.int32)}, specs)) == 0
    with pytest.raises(InputError, match="a: missing input column"):
        conform_columns({}, specs)  # the required one is named; nothing is made up


def test_a_left_out_nullable_output_is_still_the_models_fault() -> None:
    specs = column_specs([_col("y", "float64"), _col("z", "float64", nullable=True)])
    with pytest.raises(OutputError, match="z: missing output column"):
        check_output_columns(pd.DataFrame({"y": [1.0]}), specs, 1)
