"""``pymlc diff`` through the real command line: files, git revisions, folders, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow  # git repositories and the pymlc CLI in child processes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "specs" / "fare-estimator"


def pymlc(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "pymlc", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=True).stdout


def model(folder: Path) -> Path:
    """A copy of the fare-estimator example (spec, lock, model files) in ``folder``."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("generated", "*.joblib",
                                                                   "__pycache__"))
    return folder / "pyml.yaml"


def edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new))


def assert_clean_error(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout


# --- two files --------------------------------------------------------------------------------

def test_breaking_change_between_two_files_exits_1_with_a_table(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    edit(new, "  - {name: passengers, type: int8}\n", "")
    edit(new, "{name: pickup_hour, type: int32}", "{name: pickup_hour, type: int64}")
    done = pymlc("diff", old, new, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    removed = next(line for line in lines if "inputs.passengers" in line)
    assert "BREAKING" in removed and "input-removed" in removed
    widened = next(line for line in lines if "inputs.pickup_hour.type" in line)
    assert "ok" in widened and "type-widened" in widened
    assert "1 breaking change" in done.stdout


def test_json_format_lists_every_change(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    edit(new, "port: 8500", "port: 8600")
    edit(new, "version: 1.4.0", "version: 1.4.1")
    done = pymlc("diff", old, new, "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = as_json(done)
    assert report["ok"] is True
    [entry] = report["models"]
    assert (entry["name"], entry["old_version"], entry["new_version"]) == (
        "fare-estimator", "1.4.0", "1.4.1")
    assert entry["major_bump"] is False and entry["breaking"] == 0
    assert [(c["path"], c["kind"], c["breaking"]) for c in entry["changes"]] == [
        ("serving.port", "setting-changed", False), ("version", "version-changed", False)]


def test_identical_specs_have_no_changes(tmp_path: Path) -> None:
    spec = model(tmp_path / "m")
    done = pymlc("diff", spec, spec, cwd=tmp_path)
    assert done.returncode == 0
    assert "no changes" in done.stdout


def test_major_bump_turns_breaking_changes_into_warnings(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    edit(new, "  - {name: passengers, type: int8}\n", "")
    edit(new, "version: 1.4.0", "version: 2.0.0")
    done = pymlc("diff", old, new, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    removed = next(line for line in done.stdout.splitlines() if "inputs.passengers" in line)
    assert "warning" in removed and "BREAKING" not in removed
    assert "pyml.fare_estimator.v2 is a new service" in done.stdout
    entry = as_json(pymlc("diff", old, new, "--format", "json", cwd=tmp_path))["models"][0]
    assert entry["major_bump"] is True and entry["ok"] is True and entry["breaking"] == 1
    assert {"path": "inputs.passengers", "kind": "input-removed", "breaking": True,
            "message": "input 'passengers' removed; callers still send it"} in entry["changes"]


def test_files_a_spec_names_need_not_exist(tmp_path: Path) -> None:
    # Only the API is compared; a spec saved elsewhere (no model.py, no examples) is enough.
    (tmp_path / "saved.yaml").write_text((EXAMPLE / "pyml.yaml").read_text())
    done = pymlc("diff", "saved.yaml", EXAMPLE / "pyml.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_invalid_spec_is_a_diagnostic_naming_file_and_field(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    edit(new, "{name: pickup_hour, type: int32}", "{name: pickup_hour, type: flaot64}")
    done = pymlc("diff", old, new, cwd=tmp_path)
    assert done.returncode == 1
    assert_clean_error(done)
    assert "new/pyml.yaml:" in done.stderr and "inputs[2].type" in done.stderr
    assert "float64" in done.stderr
    missing = pymlc("diff", old, tmp_path / "nope.yaml", "--format", "json", cwd=tmp_path)
    assert missing.returncode == 1
    assert_clean_error(missing)
    assert as_json(missing)["diagnostics"][0]["file"] == "nope.yaml"


def test_corrupt_lock_is_a_diagnostic(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    (new.parent / "pyml.lock").write_text("{not json")
    done = pymlc("diff", old, new, cwd=tmp_path)
    assert done.returncode == 1
    assert_clean_error(done)
    assert "new/pyml.lock" in done.stderr and "not a valid lock file" in done.stderr


def test_lock_renumbering_is_breaking(tmp_path: Path) -> None:
    old = model(tmp_path / "old")
    new = model(tmp_path / "new")
    edit(new.parent / "pyml.lock", '"city": 2', '"city": 7')
    done = pymlc("diff", old, new, "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    [change] = as_json(done)["models"][0]["changes"]
    assert (change["path"], change["kind"]) == ("inputs.city", "number-changed")


@pytest.mark.parametrize("args", [["diff"], ["diff", "only-one.yaml"],
                                  ["diff", "a", "b", "--against", "HEAD"]])
def test_wrong_number_of_specs_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    done = pymlc(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "usage error" in done.stderr
    assert_clean_error(done)


# --- against a git revision -------------------------------------------------------------------

@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with two commits: the example model, then a minor, compatible edit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    model(root / "models" / "fare")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fare 1.4.0")
    spec = root / "models" / "fare" / "pyml.yaml"
    edit(spec, "version: 1.4.0", "version: 1.5.0")
    edit(spec, "outputs:\n", "outputs:\n  - {name: surcharge, type: float64}\n")
    git(root, "commit", "-q", "-am", "fare 1.5.0: a new output")
    return root


def test_against_head_has_no_changes_and_previous_commit_is_compatible(repo: Path) -> None:
    folder = repo / "models" / "fare"
    head = pymlc("diff", "--against", "HEAD", cwd=folder)
    assert head.returncode == 0, head.stderr
    assert "no changes" in head.stdout
    done = pymlc("diff", "pyml.yaml", "--against", "HEAD~1", "--format", "json", cwd=folder)
    assert done.returncode == 0, done.stderr
    entry = as_json(done)["models"][0]
    assert entry["old"] == "HEAD~1:models/fare/pyml.yaml"
    assert [(c["path"], c["breaking"]) for c in entry["changes"]] == [
        ("outputs.surcharge", False), ("version", False)]


def test_against_sees_uncommitted_breaking_edit_from_the_repo_root(repo: Path) -> None:
    spec = repo / "models" / "fare" / "pyml.yaml"
    edit(spec, "{name: city, type: string, nullable: true}", "{name: city, type: string}")
    done = pymlc("diff", "models/fare/pyml.yaml", "--against", "main", cwd=repo)
    assert done.returncode == 1
    line = next(line for line in done.stdout.splitlines() if "inputs.city.nullable" in line)
    assert "BREAKING" in line and "made-required" in line


def test_against_compares_the_committed_lock(repo: Path) -> None:
    edit(repo / "models" / "fare" / "pyml.lock", '"pickup_hour": 3', '"pickup_hour": 9')
    done = pymlc("diff", "models/fare", "--against", "HEAD", "--format", "json", cwd=repo)
    assert done.returncode == 1
    changes = as_json(done)["models"][0]["changes"]
    assert [(c["path"], c["kind"]) for c in changes] == [("inputs.pickup_hour", "number-changed")]


def test_spec_missing_at_the_revision_is_all_new(repo: Path) -> None:
    spec = model(repo / "models" / "other")
    edit(spec, "name: fare-estimator", "name: other-model")
    done = pymlc("diff", spec, "--against", "HEAD", "--format", "json", cwd=repo)
    assert done.returncode == 0, done.stderr
    entry = as_json(done)["models"][0]
    assert entry["old"] is None and entry["old_version"] is None
    assert entry["changes"][0]["kind"] == "model-added"
    assert not [c for c in entry["changes"] if c["breaking"]]


def test_folder_against_revision_reports_each_model_and_removals(repo: Path) -> None:
    model(repo / "models" / "tips")
    edit(repo / "models" / "tips" / "pyml.yaml", "name: fare-estimator", "name: tips")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tips")
    shutil.rmtree(repo / "models" / "tips")
    moved = repo / "models" / "fares"
    (repo / "models" / "fare").rename(moved)
    done = pymlc("diff", ".", "--against", "HEAD", "--format", "json", cwd=repo)
    assert done.returncode == 1, done.stderr
    entries = {e["name"]: e for e in as_json(done)["models"]}
    assert set(entries) == {"fare-estimator", "tips"}
    # A moved folder is matched by the model's name: nothing changed in it.
    assert entries["fare-estimator"]["changes"] == []
    assert entries["fare-estimator"]["old"] == "HEAD:models/fare/pyml.yaml"
    [removal] = entries["tips"]["changes"]
    assert (removal["kind"], removal["breaking"]) == ("model-removed", True)
    text = pymlc("diff", ".", "--against", "HEAD", cwd=repo)
    assert "model-removed" in text.stdout and "(removed)" in text.stdout


def test_deleted_spec_is_a_removed_model(repo: Path) -> None:
    (repo / "models" / "fare" / "pyml.yaml").unlink()
    done = pymlc("diff", "models/fare/pyml.yaml", "--against", "HEAD", "--format", "json",
                 cwd=repo)
    assert done.returncode == 1, done.stderr
    [entry] = as_json(done)["models"]
    assert (entry["name"], entry["new_version"]) == ("fare-estimator", None)
    assert [(c["kind"], c["breaking"]) for c in entry["changes"]] == [("model-removed", True)]


def test_folder_without_specs_on_either_side_is_a_diagnostic(repo: Path) -> None:
    (repo / "empty").mkdir()
    done = pymlc("diff", "empty", "--against", "HEAD", cwd=repo)
    assert done.returncode == 1
    assert_clean_error(done)
    assert "empty: error[E000]: no pyml.yaml below this folder" in done.stderr


def test_unknown_revision_is_a_usage_error(repo: Path) -> None:
    done = pymlc("diff", "models/fare/pyml.yaml", "--against", "no-such-branch", cwd=repo)
    assert done.returncode == 2
    assert "unknown git revision 'no-such-branch'" in done.stderr
    assert_clean_error(done)
    option = pymlc("diff", "models/fare/pyml.yaml", "--against=--output=x", cwd=repo)
    assert option.returncode == 2
    assert "is not a git revision" in option.stderr
    assert not (repo / "x").exists()


def test_against_outside_a_git_repository_is_a_usage_error(tmp_path: Path) -> None:
    spec = model(tmp_path / "m")
    done = pymlc("diff", spec, "--against", "HEAD", cwd=tmp_path)
    assert done.returncode == 2
    assert "not inside a git repository" in done.stderr
    assert_clean_error(done)


def test_invalid_spec_at_the_revision_names_the_revision(repo: Path) -> None:
    spec = repo / "models" / "fare" / "pyml.yaml"
    edit(spec, "type: int32}", "type: int33}")
    git(repo, "commit", "-q", "-am", "oops")
    edit(spec, "type: int33}", "type: int32}")
    done = pymlc("diff", spec, "--against", "HEAD", cwd=repo)
    assert done.returncode == 1
    assert_clean_error(done)
    assert "HEAD:models/fare/pyml.yaml:" in done.stderr and "int33" in done.stderr


# --- the documented GitHub Actions workflow -------------------------------------------------

WORKFLOW = ROOT / "docs" / "github-actions.yml"


def workflow_steps() -> tuple[dict[str, str], list[dict[str, Any]]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for s in workflow["jobs"]["models"]["steps"]
             if "run" in s and "pip install" not in s["run"]]
    return workflow["env"], steps


def run_workflow(checkout: Path, base: str) -> list[tuple[str, int, str]]:
    """Each pymlc/git step of the workflow, as a pull request into ``base`` would run it."""
    env_vars, steps = workflow_steps()
    results = []
    for step in steps:
        script = step["run"].replace("${{ github.base_ref }}", base)
        env = {**os.environ, **env_vars,
               **{k: v.replace("${{ github.base_ref }}", base)
                  for k, v in step.get("env", {}).items()},
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-e", "-c", script], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        results.append((step["name"], done.returncode, done.stdout + done.stderr))
    return results


def test_github_actions_example_runs_check_and_diff(tmp_path: Path) -> None:
    author = tmp_path / "author"
    author.mkdir()
    git(author, "init", "-q", "-b", "main")
    spec = model(author / "fare")
    assert pymlc("build", ".", cwd=author).returncode == 0
    git(author, "add", "-A")
    git(author, "commit", "-q", "-m", "fare")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(author), str(origin))
    git(author, "remote", "add", "origin", str(origin))
    edits = (("compatible", "outputs:\n", "outputs:\n  - {name: tip, type: int64}\n"),
             ("breaking", "  - {name: passengers, type: int8}\n", ""))
    for branch, old, new in edits:
        git(author, "checkout", "-q", "-b", branch, "main")
        edit(spec, old, new)
        assert pymlc("build", ".", cwd=author).returncode == 0
        git(author, "commit", "-q", "-am", branch)
        git(author, "push", "-q", "origin", branch)
    results = {}
    for branch in ("compatible", "breaking"):
        # Like actions/checkout on a pull request: one commit, no other branch.
        checkout = tmp_path / f"ci-{branch}"
        git(tmp_path, "clone", "-q", "--depth=1", "--branch", branch, f"file://{origin}",
            str(checkout))
        results[branch] = {name: (code, out) for name, code, out in run_workflow(checkout, "main")}
    assert set(results["compatible"]) == {
        "Generated artifacts are up to date", "Fetch the target branch",
        "No breaking API change against the target branch", "API changes as JSON"}
    assert {name: code for name, (code, _) in results["compatible"].items()} == dict.fromkeys(
        results["compatible"], 0)
    check_code, check_out = results["breaking"]["Generated artifacts are up to date"]
    assert check_code == 0, check_out
    diff_code, diff_out = results["breaking"]["No breaking API change against the target branch"]
    assert diff_code == 1
    assert "inputs.passengers" in diff_out and "BREAKING" in diff_out
    report = json.loads((tmp_path / "ci-breaking" / "pymlc-diff.json").read_text())
    assert [c["kind"] for c in report["models"][0]["changes"]] == ["input-removed"]
