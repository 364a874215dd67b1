"""``pymlc image`` against the real Docker engine: both targets of digit-net, the serving target of
fare-estimator, a failing build, the layer cache after a model edit, and the same Dockerfile
through BuildKit with Debian's docker client.

Never skipped: without an engine these tests fail and say how to start one
(``scripts/setup-docker``, which ``scripts/test`` runs first). Containers run with
``--network none``; builds use the host's network (pip reaches PyPI through the proxy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pymlc.cli_image import TARGET_CHOICES
from pymlc.compiler.pipeline import Compiled, compile_spec
from pymlc.image import (
    RUNTIME_PARTS,
    TARGETS,
    BuiltImage,
    assemble_context,
    build_image,
)

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
DEBIAN_DOCKER = "/usr/bin/docker"  # has BuildKit built in; a newer CLI on PATH may lack buildx
BUILD_TIMEOUT = 1800

# Runs inside an image: the runtime is importable, the compiler is not, and the model predicts
# its own examples from the files the image holds.
PROBE = """
import importlib.util, json, pathlib, sys
import numpy, pymlc
assert pymlc.__file__.startswith("/opt/pyml/lib/pymlc/"), pymlc.__file__
assert importlib.util.find_spec("pymlc.compiler") is None, "the compiler is in the image"
try:
    import pymlc.compiler
except ModuleNotFoundError:
    pass
else:
    sys.exit("pymlc.compiler imported")
config = json.loads(pathlib.Path("/opt/pyml/generated/model.json").read_text())
root = pathlib.Path("/opt/pyml/model")
print(json.dumps({"python": sys.version_info[:2], "numpy": numpy.__version__,
                  "pymlc": pymlc.__version__}))
"""

PREDICT_TENSOR = """
import json, pathlib
import numpy as np
from model import DigitNet
root = pathlib.Path("/opt/pyml/model")
data = json.loads((root / "examples/input.json").read_text())
out = DigitNet(root / "artifacts").predict({k: np.asarray(v, np.float32) for k, v in data.items()})
print(json.dumps({k: v.tolist() for k, v in out.items()}))
"""

PREDICT_FRAME = """
import json, pathlib, warnings
import pandas as pd
warnings.simplefilter("ignore")  # a pickle from another scikit-learn patch release warns
from model import FareModel
root = pathlib.Path("/opt/pyml/model")
frame = pd.read_json(root / "examples/input.json", orient="records")
print(FareModel(root / "artifacts").predict(frame).to_json(orient="records"))
"""


# --- fixtures --------------------------------------------------------------------------------



def _pymlc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pymlc", *args], capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT, env=env, cwd=ROOT)


def _cli_build(spec: Path, target: str) -> dict[str, Any]:
    done = _pymlc("image", str(spec), "--target", target, "--format", "json")
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="session")
def digit_serving(engine: Any) -> dict[str, Any]:
    return _cli_build(SPECS / "digit-net" / "pyml.yaml", "serving")


@pytest.fixture(scope="session")
def digit_batch(engine: Any) -> dict[str, Any]:
    # Java and pyspark: the slowest build of the suite, made once per session.
    return _cli_build(SPECS / "digit-net" / "pyml.yaml", "batch")


@pytest.fixture(scope="session")
def fare_serving(engine: Any) -> BuiltImage:
    spec = SPECS / "fare-estimator"
    if not (spec / "artifacts" / "model.joblib").exists():
        subprocess.run([sys.executable, str(spec / "train.py")], check=True, timeout=300)
    return build_image(compile_spec(spec / "pyml.yaml"), target="serving", client=engine)


def _manifest(compiled: Compiled) -> dict[str, Any]:
    artifact = next(a for a in compiled.artifacts if a.path == "manifest.json")
    manifest: dict[str, Any] = json.loads(artifact.content)
    return manifest


def _run(engine: Any, image: str, script: str) -> str:
    output: bytes = engine.containers.run(image, ["-c", script], entrypoint="python",
                                          network_mode="none", remove=True, stderr=True)
    return output.decode()


def _copy_spec(source: Path, dest: Path, name: str) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    spec = dest / "pyml.yaml"
    text = spec.read_text()
    old = f"name: {source.name}\n"
    assert old in text
    spec.write_text(text.replace(old, f"name: {name}\n"))
    return spec


@pytest.fixture()
def scratch_images(engine: Any) -> Iterator[list[str]]:
    """Tags of images a test makes from a scratch spec; removed afterwards."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        if engine.images.list(name=tag):
            engine.images.remove(tag)


# --- the images ------------------------------------------------------------------------------

def _assert_labels_and_user(engine: Any, image_id: str, spec: Path) -> None:
    compiled = compile_spec(spec)
    manifest = _manifest(compiled)
    config = engine.api.inspect_image(image_id)["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == manifest["name"]
    assert labels["org.opencontainers.image.version"] == manifest["version"]
    assert labels["org.opencontainers.image.revision"] == manifest["spec"]["sha256"]
    assert labels["pymlc.spec.sha256"] == manifest["spec"]["sha256"]
    assert labels["pymlc.version"] == manifest["pymlc_version"]
    user = config["User"].split(":")[0]
    assert user not in ("", "0", "root"), f"the image runs as {config['User']!r}"


def test_serving_image_of_a_tensor_model(engine: Any, digit_serving: dict[str, Any]) -> None:
    spec = SPECS / "digit-net" / "pyml.yaml"
    sha = _manifest(compile_spec(spec))["spec"]["sha256"]
    assert digit_serving["tags"] == ["digit-net:2.0.1", f"digit-net:spec-{sha[:12]}"]
    for tag in digit_serving["tags"]:
        assert engine.images.get(tag).id == digit_serving["image"]
    _assert_labels_and_user(engine, digit_serving["image"], spec)
    config = engine.api.inspect_image(digit_serving["image"])["Config"]
    assert config["Entrypoint"] == ["python", "-m", "pymlc.runtime_stub.serve"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "pymlc.runtime_stub.health"]


def test_serving_image_has_runtime_but_no_compiler(engine: Any,
                                                   digit_serving: dict[str, Any]) -> None:
    probe = json.loads(_run(engine, digit_serving["image"], PROBE))
    assert probe["python"] == [3, 11]
    assert probe["pymlc"] == __import__("pymlc").__version__


def test_serving_image_predicts_its_examples(engine: Any, digit_serving: dict[str, Any]) -> None:
    got = json.loads(_run(engine, digit_serving["image"], PREDICT_TENSOR))
    want = json.loads((SPECS / "digit-net" / "examples" / "output.json").read_text())
    assert got["label"] == want["label"]
    np.testing.assert_allclose(got["probabilities"], want["probabilities"],
                               rtol=1e-5, atol=1e-6)


def test_batch_image_has_java_spark_and_runtime(engine: Any, digit_batch: dict[str, Any]) -> None:
    spec = SPECS / "digit-net" / "pyml.yaml"
    sha = _manifest(compile_spec(spec))["spec"]["sha256"]
    assert digit_batch["tags"] == ["digit-net:2.0.1-batch", f"digit-net:spec-{sha[:12]}-batch"]
    _assert_labels_and_user(engine, digit_batch["image"], spec)
    config = engine.api.inspect_image(digit_batch["image"])["Config"]
    assert config["Entrypoint"] == ["python", "/opt/pyml/generated/batch_job.py"]
    _run(engine, digit_batch["image"], PROBE)
    java = engine.containers.run(digit_batch["image"], ["-version"], entrypoint="java",
                                 network_mode="none", remove=True, stderr=True).decode()
    assert 'version "17.' in java
    spark = _run(engine, digit_batch["image"], "import pyspark; print(pyspark.__version__)")
    assert spark.strip() == "4.3.0"


def test_the_batch_image_scores_a_query_into_a_table(engine: Any, digit_batch: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """The containerized job as a user runs it: its entry point, a mounted folder holding the
    query's Parquet file and the warehouse, no network; the same outputs as in-process."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_digits

    from pymlc.compiler.write import write_tree
    from pymlc.runtime_stub.config import ModelConfig
    from pymlc.runtime_stub.predict import Predictor

    pixels = load_digits().images[:300].astype(np.float32)
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the image's own user writes the warehouse here
    pq.write_table(pa.table({"pixels": pa.array(pixels.tolist(),
                                                pa.list_(pa.list_(pa.float32())))}),
                   data / "images.parquet")
    log = engine.containers.run(
        digit_batch["image"], ["--query", "SELECT pixels FROM parquet.`/data/images.parquet`",
                               "--output-table", "scores.digits", "--warehouse", "/data/wh"],
        volumes={str(data): {"bind": "/data", "mode": "rw"}}, network_mode="none",
        remove=True, stdout=False, stderr=True).decode()
    assert "done: 300 rows written to scores.digits" in log, log

    files = sorted((data / "wh" / "scores.db" / "digits").glob("*.parquet"))
    assert files and all(pq.ParquetFile(f).metadata.created_by.startswith("parquet-mr")
                         for f in files)  # written by Spark's writer: the one data path
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert table.column_names == ["label", "probabilities"]
    write_tree(tmp_path / "generated", compile_spec(SPECS / "digit-net" / "pyml.yaml").artifacts)
    predictor = Predictor(ModelConfig.load(tmp_path / "generated" / "model.json"),
                          SPECS / "digit-net")
    want = predictor.predict_tensors({"pixels": pixels})
    # Rows may come back in another order (the job spreads them over the container's cores):
    # every row must match a row of the other side, with the same label.
    labels = np.array(table["label"].to_pylist())
    probabilities = np.array(table["probabilities"].to_pylist(), dtype=np.float32)
    assert sorted(labels.tolist()) == sorted(want["label"].tolist())
    distance = np.abs(probabilities[:, None, :] - want["probabilities"][None, :, :]).max(axis=2)
    close = (distance <= 1e-5) & (labels[:, None] == want["label"][None, :])
    assert close.any(axis=1).all() and close.any(axis=0).all()


def test_serving_image_of_a_dataframe_model(engine: Any, fare_serving: BuiltImage) -> None:
    spec = SPECS / "fare-estimator" / "pyml.yaml"
    assert fare_serving.tags[0] == "registry.example.com/ml/fare-estimator:1.4.0"
    _assert_labels_and_user(engine, fare_serving.id, spec)
    _run(engine, fare_serving.id, PROBE)
    got = json.loads(_run(engine, fare_serving.id, PREDICT_FRAME))
    want = json.loads((SPECS / "fare-estimator" / "examples" / "output.json").read_text())
    np.testing.assert_allclose([r["fare"] for r in got], [r["fare"] for r in want], rtol=1e-6)


# --- failures, cache, BuildKit ---------------------------------------------------------------

def test_unknown_requirement_fails_at_its_step_without_traceback(
        engine: Any, tmp_path: Path) -> None:
    spec = _copy_spec(SPECS / "digit-net", tmp_path / "broken", "broken-requirements")
    (spec.parent / "requirements.txt").write_text("pymlc-no-such-package-xyz==1.0\n")
    done = _pymlc("image", str(spec))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert "image build failed at step " in done.stderr
    assert "RUN pip install" in done.stderr
    assert "No matching distribution found for pymlc-no-such-package-xyz==1.0" in done.stderr
    assert "returned a non-zero code: 1" in done.stderr


def test_unreachable_engine_says_how_to_start_it(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    done = _pymlc("image", str(SPECS / "digit-net"), env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot reach the Docker engine" in done.stderr
    assert "scripts/setup-docker" in done.stderr and "dockerd" in done.stderr


def test_model_edit_reuses_the_dependency_layers(
        engine: Any, tmp_path: Path, digit_serving: dict[str, Any],
        scratch_images: list[str]) -> None:
    spec = _copy_spec(SPECS / "digit-net", tmp_path / "model", "digit-net-rebuild")
    first = build_image(compile_spec(spec), client=engine)
    scratch_images.extend(first.tags)
    with (spec.parent / "model.py").open("a") as handle:
        handle.write("\n# an edit to the model code only\n")
    second = build_image(compile_spec(spec), client=engine)
    pip = [s for s in second.steps if s.instruction.startswith("RUN pip install")]
    assert len(pip) == 1 and pip[0].cached, [str(s) for s in second.steps]
    model_copy = next(s for s in second.steps if s.instruction.startswith("COPY model/ "))
    assert not model_copy.cached
    before = engine.api.inspect_image(first.id)["RootFS"]["Layers"]
    after = engine.api.inspect_image(second.id)["RootFS"]["Layers"]
    assert before[:-1] == after[:-1], "a layer below the model's own files was rebuilt"
    assert before[-1] != after[-1]


def test_buildkit_builds_the_same_dockerfile(engine: Any, scratch_images: list[str]) -> None:
    compiled = compile_spec(SPECS / "digit-net" / "pyml.yaml")
    tag = "pymlc-test/digit-net:buildkit"
    scratch_images.append(tag)
    with assemble_context(compiled) as context:
        done = subprocess.run(
            [DEBIAN_DOCKER, "build", "--network", "host", "--target", "serving",
             "-f", str(context / "generated" / "Dockerfile"), "-t", tag, str(context)],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    _assert_labels_and_user(engine, tag, SPECS / "digit-net" / "pyml.yaml")
    _run(engine, tag, PROBE)


# --- the build context -----------------------------------------------------------------------

def test_context_holds_model_generated_files_and_runtime_only(tmp_path: Path) -> None:
    spec = _copy_spec(SPECS / "digit-net", tmp_path / "model", "digit-net")
    for junk in ("generated/Dockerfile", "__pycache__/model.cpython-311.pyc", ".venv/bin/python",
                 "sub/.git/HEAD"):
        (spec.parent / junk).parent.mkdir(parents=True, exist_ok=True)
        (spec.parent / junk).write_text("junk")
    compiled = compile_spec(spec)
    with assemble_context(compiled) as context:
        files = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
        generated = {a.path: a.content for a in compiled.artifacts}
        for path, content in generated.items():
            assert (context / "generated" / path).read_text() == content
    assert {f for f in files if f.startswith("generated/")} == {f"generated/{p}"
                                                                for p in generated}
    assert ".dockerignore" in files
    model = {f.removeprefix("model/") for f in files if f.startswith("model/")}
    assert model == {p.relative_to(spec.parent).as_posix() for p in spec.parent.rglob("*")
                     if p.is_file() and p.parts[len(spec.parent.parts)] not in
                     ("generated", "__pycache__", ".venv", "sub")}
    runtime = {f.removeprefix("runtime/pymlc/") for f in files if f.startswith("runtime/")}
    assert {"__init__.py", "_version.py", "runtime_stub/__init__.py"} <= runtime
    assert {r.split("/")[0] for r in runtime} == set(RUNTIME_PARTS)
    assert not any(r.endswith(".pyc") for r in runtime)


def test_cli_targets_are_the_backends() -> None:
    assert TARGET_CHOICES == TARGETS


def test_invalid_extra_tag_is_refused_before_building(engine: Any) -> None:
    done = _pymlc("image", str(SPECS / "digit-net"), "--tag", "Not A Tag")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "not a valid image reference: 'Not A Tag'" in done.stderr
    assert "Step 1/" not in done.stderr and "[ 1/" not in done.stderr


def test_text_output_lists_each_step_and_the_tags(digit_serving: dict[str, Any]) -> None:
    done = _pymlc("image", str(SPECS / "digit-net"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # stdout stays for data (--format json)
    steps = [line for line in done.stderr.splitlines() if "] RUN pip install" in line]
    assert len(steps) == 1 and steps[0].split()[0] == "cached", done.stderr
    assert "built serving image " in done.stderr
    for tag in digit_serving["tags"]:
        assert f"tagged {tag}" in done.stderr
