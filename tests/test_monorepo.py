"""A monorepo of models: ``pymlc build DIR`` and ``pymlc check DIR`` find every spec below DIR,
and one stale model is reported, alone, in one run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the pymlc CLI in child processes over a copied monorepo

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
IGNORE = shutil.ignore_patterns("generated", "*.joblib", "__pycache__")


def pymlc(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "pymlc", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def rename(spec: Path, name: str) -> None:
    text = spec.read_text()
    old = next(line for line in text.splitlines() if line.startswith("name: "))
    spec.write_text(text.replace(old, f"name: {name}"))


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four models at different depths, built: two dataframe, one tensor, one scaffolded."""
    root = tmp_path_factory.mktemp("monorepo")
    shutil.copytree(SPECS / "fare-estimator", root / "pricing" / "fare", ignore=IGNORE)
    shutil.copytree(SPECS / "fare-estimator", root / "pricing" / "tips", ignore=IGNORE)
    rename(root / "pricing" / "tips" / "pyml.yaml", "tip-estimator")
    (root / "pricing" / "tips" / "pyml.lock").unlink()  # a model that was never built
    shutil.copytree(SPECS / "digit-net", root / "vision" / "digits", ignore=IGNORE)
    assert pymlc("init", "churn", cwd=root / "vision").returncode == 0
    done = pymlc("build", ".", "--format", "json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert sorted(m["name"] for m in json.loads(done.stdout)["models"]) == [
        "churn", "digit-net", "fare-estimator", "tip-estimator"]
    return root


MODELS = {"fare-estimator": "pricing/fare", "tip-estimator": "pricing/tips",
          "digit-net": "vision/digits", "churn": "vision/churn"}


def test_build_writes_every_model_beside_its_spec(monorepo: Path) -> None:
    for folder in MODELS.values():
        assert (monorepo / folder / "generated" / "manifest.json").is_file()
        assert (monorepo / folder / "pyml.lock").is_file()
    done = pymlc("check", monorepo, "--format", "json", cwd=monorepo.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"ok": True, "checked": 4, "stale": []}


@pytest.fixture
def stale(monorepo: Path, tmp_path: Path) -> Path:
    """A copy of the built monorepo whose tip-estimator spec was edited but not rebuilt."""
    copy = tmp_path / "repo"
    shutil.copytree(monorepo, copy)
    spec = copy / "pricing" / "tips" / "pyml.yaml"
    spec.write_text(spec.read_text().replace("timeout_ms: 1000", "timeout_ms: 250"))
    return copy


def test_one_stale_model_is_named_alone_in_one_run(stale: Path) -> None:
    done = pymlc("check", ".", cwd=stale)
    assert done.returncode == 1
    report = done.stdout + done.stderr
    assert "1 of 4 model(s) out of date" in report
    assert "pricing/tips/generated/serving.yaml" in report
    assert "-  timeout_ms: 1000" in done.stdout and "+  timeout_ms: 250" in done.stdout
    others = [folder for name, folder in MODELS.items() if name != "tip-estimator"]
    assert not [folder for folder in others if folder in report]


def test_one_stale_model_is_the_only_one_in_json(stale: Path) -> None:
    done = pymlc("check", stale, "--format", "json", cwd=stale.parent)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert (report["ok"], report["checked"]) == (False, 4)
    assert [m["name"] for m in report["stale"]] == ["tip-estimator"]
    [model] = report["stale"]
    assert model["spec"].endswith("pricing/tips/pyml.yaml")
    paths = {f["path"] for f in model["files"]}
    assert any(p.endswith("pricing/tips/generated/serving.yaml") for p in paths)
    assert all("pricing/tips/" in p for p in paths)


def test_hand_edited_artifact_in_a_deep_folder_is_found(monorepo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(monorepo, copy)
    dockerfile = copy / "vision" / "digits" / "generated" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN echo hand-edited\n")
    done = pymlc("check", copy / "vision", copy / "pricing", "--format", "json", cwd=copy)
    assert done.returncode == 1
    assert [m["name"] for m in json.loads(done.stdout)["stale"]] == ["digit-net"]
