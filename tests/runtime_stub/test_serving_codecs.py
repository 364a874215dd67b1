"""Codecs in-process: typed proto round trips (nulls, dates, raw tensors without a copy) and
input files (JSON, CSV, Parquet, .npz) decoded into the spec's dtypes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_support import build, stubs, write_probe

from pymlc.runtime_stub.checks import InputError, column_specs, conform_columns, tensor_specs
from pymlc.runtime_stub.codecs import (
    columns_from_typed,
    frame_to_records,
    from_bytes,
    read_columns,
    read_tensors,
    tensors_from_typed,
    tensors_to_json,
    typed_from_frame,
    typed_from_tensors,
)
from pymlc.runtime_stub.config import FieldConfig, ModelConfig


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelConfig, Any]:
    spec = write_probe(tmp_path_factory.mktemp("codec-probe") / "spec")
    generated = build(spec, tmp_path_factory.mktemp("codec-probe-generated"))
    return ModelConfig.load(generated / "model.json"), stubs(generated, "probe_v0")[0]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "x": [1.5, -2.0, 0.0],
        "delay_ms": np.array([0, 1, 2], dtype=np.int32),
        "day": np.array(["2024-02-29", "NaT", "1969-12-31"], dtype="datetime64[D]"),
        "label": np.array(["é", None, ""], dtype=object),
    })


def test_typed_round_trip_keeps_nulls_and_dates(probe: tuple[ModelConfig, Any]) -> None:
    config, pb2 = probe
    specs = column_specs(config.inputs)
    frame = conform_columns(dict(_frame()), specs)
    message = typed_from_frame(pb2.PredictRequest(), frame, specs)
    assert list(message.day.values) == [19782, 0, -1] and list(message.day.nulls) == \
        [False, True, False]
    assert list(message.label.nulls) == [False, True, False]
    decoded = conform_columns(columns_from_typed(
        pb2.PredictRequest.FromString(message.SerializeToString()), specs), specs)
    pd.testing.assert_frame_equal(decoded, frame)


def test_typed_nulls_are_omitted_when_there_are_none(probe: tuple[ModelConfig, Any]) -> None:
    config, pb2 = probe
    specs = column_specs(config.inputs)
    frame = conform_columns(dict(_frame().assign(label=["a", "b", "c"])), specs)
    assert list(typed_from_frame(pb2.PredictRequest(), frame, specs).label.nulls) == []


def test_typed_null_flags_must_match_the_values(probe: tuple[ModelConfig, Any]) -> None:
    config, pb2 = probe
    message = pb2.PredictRequest(x={"values": [1.0]}, delay_ms={"values": [0]})
    message.label.values.extend(["a"])
    message.label.nulls.extend([True, False])
    with pytest.raises(InputError, match="label: 2 null flags for 1 values"):
        columns_from_typed(message, column_specs(config.inputs))


def test_raw_tensor_bytes_decode_without_a_copy() -> None:
    data = np.arange(6, dtype="<f4").tobytes()
    array = from_bytes(data, np.dtype("<f4"), (2, 3))
    assert array.base is not None and not array.flags.writeable
    assert np.shares_memory(array, np.frombuffer(data, dtype=np.uint8))
    with pytest.raises(ValueError, match="24 bytes do not hold shape \\[4, 3\\]"):
        from_bytes(data, np.dtype("<f4"), (4, 3))



@pytest.mark.parametrize(("shape", "problem"), [
    ((-1, 3), "shape [-1, 3] has a negative dimension"),  # numpy would fill the -1 in
    ((2, -3), "shape [2, -3] has a negative dimension"),
    ((), "24 bytes do not hold shape [] of float32 (4 bytes)"),
    ((7,), "24 bytes do not hold shape [7] of float32 (28 bytes)"),
    ((6,) + (1,) * 70, "maximum supported dimension"),  # numpy's own limit, in its words
])
def test_raw_tensor_shapes_that_the_bytes_do_not_fill(shape: tuple[int, ...],
                                                      problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        from_bytes(np.arange(6, dtype="<f4").tobytes(), np.dtype("<f4"), shape)
    assert problem in str(caught.value)


def test_typed_tensors_round_trip(tmp_path: Path) -> None:
    from serving_support import SPECS

    generated = build(SPECS / "digit-net", tmp_path / "gen")
    config = ModelConfig.load(generated / "model.json")
    pb2, _ = stubs(generated, "digit_net_v2")
    specs = tensor_specs(config.outputs)
    outputs = {"label": np.array([3, 1]), "probabilities": np.full((2, 10), 0.1, np.float32)}
    message = typed_from_tensors(pb2.PredictResponse(), outputs, specs)
    assert list(message.label.shape) == [2] and len(message.label.data) == 16
    back = tensors_from_typed(pb2.PredictResponse.FromString(message.SerializeToString()), specs)
    assert back["label"].tolist() == [3, 1]
    assert back["probabilities"].dtype == np.float32 and back["probabilities"].shape == (2, 10)


def _specs() -> Any:
    return column_specs([FieldConfig("f", 1, "float32", False, None),
                         FieldConfig("i", 2, "int8", False, None),
                         FieldConfig("s", 3, "string", True, None),
                         FieldConfig("d", 4, "date", True, None),
                         FieldConfig("t", 5, "timestamp", False, None),
                         FieldConfig("b", 6, "binary", False, None)])


RECORDS = [
    {"f": 0.1, "i": 3, "s": "a", "d": "2024-05-01", "t": "2024-05-01T10:00:00.5Z", "b": "AAE="},
    {"f": 1, "i": -4, "s": None, "d": None, "t": "2024-05-01T12:00:00+02:00", "b": ""},
]


def test_json_records_decode_straight_into_the_spec_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(RECORDS))
    frame = conform_columns(read_columns(path, _specs()), _specs())
    assert frame["f"].dtype == np.float32 and frame["f"][0] == np.float32(0.1)
    assert frame["i"].dtype == np.int8 and frame["i"].tolist() == [3, -4]
    assert frame["s"].tolist() == ["a", None]
    assert str(frame["d"][0].date()) == "2024-05-01" and pd.isna(frame["d"][1])
    assert frame["t"].tolist() == [pd.Timestamp("2024-05-01T10:00:00.5"),
                                   pd.Timestamp("2024-05-01T10:00:00")]
    assert frame["b"].tolist() == [b"\x00\x01", b""]
    records = frame_to_records(frame)
    assert records[0]["d"] == "2024-05-01" and records[1]["d"] is None
    assert records[0]["t"] == "2024-05-01T10:00:00.500Z" and records[0]["b"] == "AAE="
    assert json.loads(json.dumps(records))[1]["s"] is None


def test_json_floats_for_an_int_column_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps([dict(RECORDS[0], i=2.5)]))
    with pytest.raises(InputError, match="i: cannot decode JSON values: expected integers"):
        read_columns(path, _specs())


def test_json_columns_form_and_csv_and_parquet_agree(tmp_path: Path) -> None:
    specs = column_specs([FieldConfig("x", 1, "float64", False, None),
                          FieldConfig("n", 2, "int16", True, None),
                          FieldConfig("s", 3, "string", True, None)])
    frame = pd.DataFrame({"x": [1.0, 2.5], "n": pd.array([7, None], dtype="Int16"),
                          "s": ["q", None]})
    (tmp_path / "cols.json").write_text(json.dumps({"x": [1.0, 2.5], "n": [7, None],
                                                    "s": ["q", None]}))
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet")
    for name in ("cols.json", "in.csv", "in.parquet"):
        decoded = conform_columns(read_columns(tmp_path / name, specs), specs)
        pd.testing.assert_frame_equal(decoded, frame, check_dtype=True, obj=name)


def test_unsupported_formats_say_which_are(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="use .json, .csv or .parquet"):
        read_columns(tmp_path / "in.xlsx", _specs())
    with pytest.raises(InputError, match="use .json or .npz"):
        read_tensors(tmp_path / "in.csv", ())


def test_tensor_files(tmp_path: Path) -> None:
    specs = tensor_specs([FieldConfig("p", 1, "float32", False, (-1, 2))])
    (tmp_path / "in.json").write_text(json.dumps({"p": [[0.1, 2]]}))
    from_json = read_tensors(tmp_path / "in.json", specs)
    assert from_json["p"].dtype == np.float32 and from_json["p"][0, 0] == np.float32(0.1)
    np.savez(tmp_path / "in.npz", p=np.ones((3, 2), np.float32))
    assert read_tensors(tmp_path / "in.npz", specs)["p"].shape == (3, 2)
    assert tensors_to_json({"p": np.ones((1, 2))}) == {"p": [[1.0, 1.0]]}


FLOAT32_SPEC = """\
pyml: 1
name: narrow
version: 1.0.0
model: {kind: dataframe, entrypoint: model:Narrow}
inputs:
  - {name: f, type: float32}
outputs:
  - {name: g, type: float32, nullable: true}
"""


def test_float32_travels_as_double_and_arrives_as_float32(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "pyml.yaml").write_text(FLOAT32_SPEC)
    (spec / "model.py").write_text(
        "from pymlc import DataFrameModel\n\n\nclass Narrow(DataFrameModel):\n"
        "    def __init__(self, a): pass\n\n"
        "    def predict(self, df): return df.rename(columns={'f': 'g'})\n")
    config = ModelConfig.load(build(spec, tmp_path / "out") / "model.json")
    pb2 = stubs(tmp_path / "out", "narrow_v1")[0]
    specs = column_specs(config.inputs)
    # A client sends doubles (the field is a DoubleColumn): they arrive rounded to float32,
    # exactly as a `float` field would have rounded them.
    request = pb2.PredictRequest(f={"values": [0.1, 1e-3, 3.0]})
    decoded = conform_columns(columns_from_typed(request, specs), specs)
    assert decoded["f"].dtype == np.float32
    assert decoded["f"].tolist() == np.array([0.1, 1e-3, 3.0], np.float32).tolist()
    # float32 values survive the round trip through the double on the wire bit for bit.
    frame = pd.DataFrame({"f": np.array([0.1, np.pi, -7.25], np.float32)})
    again = typed_from_frame(pb2.PredictRequest(), frame, specs)
    back = conform_columns(columns_from_typed(again, specs), specs)
    assert back["f"].to_numpy().tobytes() == frame["f"].to_numpy().tobytes()
