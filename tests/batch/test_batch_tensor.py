"""Tensor models in batch: digit-net (``pixels float32 [-1, 8, 8]`` -> ``label int64 [-1]``,
``probabilities float32 [-1, 10]``) scored from a Parquet file of nested lists into a table, one
row per sample, like ``Predictor.predict_tensors`` in-process; queries of the wrong nesting depth
or element type refused before any work; samples of the wrong size fail the job naming them.

digit-net's ``flat @ weights`` is a float32 matrix product: OpenBLAS picks its kernels by the
number of rows, so a sample's probabilities differ in the last bits between a batch of 700 rows
(Spark's) and one of 5,000 (in-process), and between any two batch sizes (measured: 32 of 5,000
samples differ between batches of 700 and 5,000, all within 2e-7; every sample differs between
batches of 1 and 5,000, within 1.4e-6). pymlc hands the model the same values either way; the
comparison uses the spec's own example tolerance (rtol 1e-5, atol 1e-6), as ``pymlc verify``
does. A model whose rows do not depend on their batch (the fare estimator) is bit-identical
(``test_batch_cli``)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, table_folder
from sklearn.datasets import load_digits

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.write import write_tree
from pymlc.runtime_stub.checks import InputError
from pymlc.runtime_stub.config import ModelConfig
from pymlc.runtime_stub.predict import Predictor
from pymlc.runtime_stub.spark_driver import main
from pymlc.runtime_stub.spark_plan import Column, PlanError, plan_job
from pymlc.runtime_stub.spark_tensor import from_tensor, to_tensor

pytestmark = pytest.mark.spark

DIGITS = ROOT / "specs" / "digit-net"
ROWS = 5_000


@pytest.fixture(scope="module")
def digits_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digit-net with a passthrough column and batches of 700 rows; generated beside it."""
    folder = tmp_path_factory.mktemp("digits") / "digit-net"
    folder.mkdir()
    shutil.copytree(DIGITS / "artifacts", folder / "artifacts")
    shutil.copy(DIGITS / "model.py", folder / "model.py")
    spec = (DIGITS / "pyml.yaml").read_text(encoding="utf-8")
    spec = spec.replace("  requirements: requirements.txt\n", "")
    spec = spec[: spec.index("examples:")] + "batch:\n  passthrough: [image_id]\n" \
        "  rows_per_batch: 700\n"
    (folder / "pyml.yaml").write_text(spec, encoding="utf-8")
    write_tree(folder / "generated", compile_spec(folder / "pyml.yaml").artifacts)
    return folder


@pytest.fixture(scope="module")
def pixels() -> np.ndarray[Any, Any]:
    """ROWS images: scikit-learn's bundled digits, then noisy copies of them."""
    images = load_digits().images.astype(np.float32)
    noise = np.random.default_rng(3).uniform(0, 2, size=(ROWS, 8, 8)).astype(np.float32)
    return np.resize(images, (ROWS, 8, 8)) + noise


def _nested(values: np.ndarray[Any, Any]) -> pa.Array:
    array: pa.Array = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        array = pa.ListArray.from_arrays(pa.array(np.arange(0, len(array) + 1, size,
                                                            dtype=np.int32)), array)
    return array


def _write_images(path: Path, pixels: np.ndarray[Any, Any]) -> Path:
    ids = pa.array(np.arange(len(pixels), dtype=np.int64) * 10)
    pq.write_table(pa.table({"image_id": ids, "pixels": _nested(pixels)}), path,
                   row_group_size=1_500)
    return path


def _run(spec: Path, query: str, table: str) -> int:
    return main(["--query", query, "--output-table", table, "--model-root", str(spec)],
                config_path=spec / "generated" / "model.json")


# --- without Spark ------------------------------------------------------------------------

def test_nested_arrays_stack_into_a_tensor_and_split_back() -> None:
    values = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    column = _nested(values)
    stacked = to_tensor(column, "x", (-1, 3, 4))
    assert stacked.shape == (2, 3, 4) and np.array_equal(stacked, values)
    assert to_tensor(column.slice(1), "x", (-1, 3, -1)).shape == (1, 3, 4)
    back = from_tensor(values, pa.list_(pa.list_(pa.field("element", pa.float32()))))
    assert back.to_pylist() == values.tolist()
    labels = from_tensor(np.array([3, 1], dtype=np.int64), pa.int64())
    assert labels.to_pylist() == [3, 1]
    halves = from_tensor(np.ones((2, 2), dtype=np.float16), pa.list_(pa.float32()))
    assert halves.type == pa.list_(pa.float32()) and halves.to_pylist() == [[1, 1], [1, 1]]


def test_samples_of_the_wrong_size_or_with_nulls_are_refused_naming_their_rows() -> None:
    ragged = pa.array([[[1.0, 2.0]], [[1.0, 2.0, 3.0]], [[4.0]]], type=pa.list_(
        pa.list_(pa.float32())))
    with pytest.raises(InputError, match=r"x: 2 row\(s\) have 1, 3 values at dimension 2, but"
                                         r" shape \[-1, 1, 2\] needs 2") as caught:
        to_tensor(ragged, "x", (-1, 1, 2))
    assert caught.value.rows == {"x": (1, 2)}  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="size varies within a batch"):
        to_tensor(ragged, "x", (-1, 1, -1))
    holes = pa.array([[[1.0, 2.0]], [[1.0, None]], None], type=ragged.type)
    with pytest.raises(InputError, match=r"x: 1 null sample\(s\)") as caught:
        to_tensor(holes, "x", (-1, 1, 2))
    assert caught.value.rows == {"x": (2,)}  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"x: 1 null element\(s\)") as caught:
        to_tensor(holes.slice(0, 2), "x", (-1, 1, 2))
    assert caught.value.rows == {"x": (1,)}  # type: ignore[attr-defined]


def test_the_query_check_reports_depth_and_element_type_at_once(digits_spec: Path) -> None:
    config = ModelConfig.load(digits_spec / "generated" / "model.json")
    plan = plan_job(config, [Column("image_id", "bigint"),
                             Column("PIXELS", "array<array<float>>")])
    assert plan.inputs[0][0] == "PIXELS" and plan.inputs[0][2] == "ARRAY<ARRAY<FLOAT>>"
    assert [(c.name, c.spark_type) for c in plan.output] == [
        ("image_id", "bigint"), ("label", "bigint"), ("probabilities", "array<float>")]
    with pytest.raises(PlanError) as caught:
        plan_job(config, [Column("pixels", "array<double>")])
    assert len(caught.value.problems) == 2
    problem = caught.value.problems[0]
    assert "column 'pixels' is ARRAY<DOUBLE>, but input 'pixels' (float32 [-1, 8, 8]) is" \
        " ARRAY<ARRAY<FLOAT>>: 1 level of arrays where float32 [-1, 8, 8] needs 2" in problem
    assert "elements of type DOUBLE where float32 needs FLOAT" in problem
    assert "missing column 'image_id'" in caught.value.problems[1]
    with pytest.raises(PlanError, match=r"CAST\(`pixels` AS ARRAY<ARRAY<FLOAT>>\)"):
        plan_job(config, [Column("image_id", "int"), Column("pixels", "array<array<int>>")])


def test_a_fixed_batch_dimension_is_refused_for_batch(digits_spec: Path) -> None:
    config = ModelConfig.load(digits_spec / "generated" / "model.json")
    fixed = dataclasses.replace(config.inputs[0], shape=(1, 8, 8))
    scalar = dataclasses.replace(config.outputs[0], shape=())
    config = dataclasses.replace(config, inputs=(fixed,), outputs=(scalar, config.outputs[1]))
    with pytest.raises(PlanError) as caught:
        plan_job(config, [Column("image_id", "int"), Column("pixels", "array<array<float>>")])
    assert caught.value.problems == (
        "input 'pixels' has shape [1, 8, 8]: batch scoring needs -1 as the first dimension,"
        " the batch dimension (one query row per sample); declare shape: [-1, 8, 8] in the"
        " spec to score it in batch",
        "output 'label' has shape []: batch scoring needs -1 as the first dimension, the batch"
        " dimension (one query row per sample); declare shape: [-1] in the spec to score it in"
        " batch")


# --- with Spark ---------------------------------------------------------------------------

def test_digits_from_nested_lists_are_scored_like_in_process(
        spark: Any, digits_spec: Path, pixels: np.ndarray[Any, Any], tmp_path: Path) -> None:
    parquet = _write_images(tmp_path / "images.parquet", pixels)
    assert spark.read.parquet(str(parquet)).schema.simpleString() == \
        "struct<image_id:bigint,pixels:array<array<float>>>"
    assert _run(digits_spec, f"SELECT * FROM parquet.`{parquet}`", "digits.scores") == 0

    table = spark.table("digits.scores")
    assert table.schema.simpleString() == \
        "struct<image_id:bigint,label:bigint,probabilities:array<float>>"
    rows = pq.read_table(table_folder(spark, "digits.scores")).sort_by("image_id")
    assert rows.column("image_id").to_pylist() == list(range(0, ROWS * 10, 10))
    predictor = Predictor(ModelConfig.load(digits_spec / "generated" / "model.json"),
                          digits_spec)
    expected = predictor.predict_tensors({"pixels": pixels})
    label = rows.column("label").to_numpy()
    probabilities = np.stack(rows.column("probabilities").to_numpy(zero_copy_only=False))
    assert label.dtype == np.int64 and np.array_equal(label, expected["label"])
    assert probabilities.dtype == np.float32 and probabilities.shape == (ROWS, 10)
    # specs/digit-net/pyml.yaml's examples.tolerance: BLAS results depend on the batch's size.
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert len(set(label.tolist())) == 10


def test_a_query_of_the_wrong_depth_or_type_is_refused_before_any_work(
        spark: Any, digits_spec: Path, pixels: np.ndarray[Any, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet = _write_images(tmp_path / "images.parquet", pixels[:100])
    query = (f"SELECT image_id, flatten(transform(pixels, r -> transform(r, v -> CAST(v AS"
             f" DOUBLE)))) AS pixels FROM parquet.`{parquet}`")
    capsys.readouterr()
    assert _run(digits_spec, query, "refused.scores") == 1
    err = capsys.readouterr().err
    assert "does not fit the spec (1 problem); nothing was written to refused.scores" in err
    assert "column 'pixels' is ARRAY<DOUBLE>" in err
    assert "1 level of arrays where float32 [-1, 8, 8] needs 2" in err
    assert "elements of type DOUBLE where float32 needs FLOAT" in err
    assert "scoring" not in err
    assert not spark.catalog.databaseExists("refused")


def test_a_sample_of_the_wrong_size_fails_the_job_and_writes_nothing(
        spark: Any, digits_spec: Path, pixels: np.ndarray[Any, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    parquet = _write_images(tmp_path / "images.parquet", pixels[:1000])
    query = (f"SELECT image_id, IF(image_id = 5000, slice(pixels, 1, 7), pixels) AS pixels"
             f" FROM parquet.`{parquet}`")
    capsys.readouterr()
    assert _run(digits_spec, query, "ragged.scores") == 1
    err = capsys.readouterr().err
    assert "error: the job failed: bad rows: pixels: 1 row(s) have 7 values at dimension 1, but" \
        " shape [-1, 8, 8] needs 8 (rows with image_id 5000)" in err
    assert not spark.catalog.databaseExists("ragged")
