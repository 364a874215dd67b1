"""The pre-commit hooks of .pre-commit-hooks.yaml, run for real with ``pre-commit try-repo``.

try-repo installs this repository at its HEAD commit into a fresh virtualenv with pip, as a
user's ``pre-commit install`` would at a ``rev``, then runs the hook in a temporary git
repository holding models. HEAD is named explicitly (``--ref``): without it, try-repo adds the
uncommitted edits of tracked files but not new untracked files, a half-state that need not
even import while work is in progress. In CI the checkout is clean and HEAD is the tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # pip installs each hook's environment

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **IDENTITY, "NO_COLOR": "1"}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def try_repo(hook: str | None, repo: Path) -> subprocess.CompletedProcess[str]:
    """``pre-commit try-repo ROOT [HOOK] --all-files`` in ``repo``; no HOOK runs them all."""
    hooks = [hook] if hook else []
    head = run("git", "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    return run(sys.executable, "-m", "pre_commit", "try-repo", ROOT, *hooks, "--ref", head,
               "--all-files", "--color", "never", cwd=repo)


def test_hooks_manifest_offers_both_hooks() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"pymlc-check", "pymlc-validate"}
    assert all(h["language"] == "python" for h in hooks.values())
    assert hooks["pymlc-check"]["pass_filenames"] is False
    assert hooks["pymlc-validate"]["pass_filenames"] is True


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding two built and committed models, models/churn and models/tips.

    They are scaffolded by ``pymlc init``: their requirements (numpy, pandas) are pymlc's own,
    and ``pymlc validate`` runs a model's examples, so it needs the model's requirements in the
    hook's environment (a user lists them in ``additional_dependencies``; see docs/ci.md).
    """
    root = tmp_path / "repo"
    (root / "models").mkdir(parents=True)
    for name in ("churn", "tips"):
        assert run(sys.executable, "-m", "pymlc", "init", name, cwd=root / "models").returncode == 0
    assert run("git", "init", "-q", cwd=root).returncode == 0
    built = run(sys.executable, "-m", "pymlc", "build", ".", cwd=root)
    assert built.returncode == 0, built.stderr
    run("git", "add", "-A", cwd=root)
    assert run("git", "commit", "-q", "-m", "two models", cwd=root).returncode == 0
    return root


def stage(repo: Path, spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))
    run("git", "add", "-A", cwd=repo)  # pre-commit stashes unstaged edits: stage them


# try-repo always installs the hooks' environment afresh (~40 s with a warm pip cache), so
# each test makes one call and asserts everything it can about it.

def test_all_hooks_pass_the_fresh_model_and_check_fails_the_stale_one(repo: Path) -> None:
    stage(repo, repo / "models" / "tips" / "pyml.yaml", "description: tips model",
          "description: tips, now with a description")
    done = try_repo(None, repo)
    assert done.returncode == 1, done.stdout + done.stderr
    results = {line.split(".")[0]: line for line in done.stdout.splitlines()
               if line.endswith(("Passed", "Failed"))}
    assert results["pymlc validate"].endswith("Passed")
    assert results["pymlc check (generated artifacts are up to date)"].endswith("Failed")
    assert "models/tips/generated/" in done.stdout
    assert "models/churn/" not in done.stdout
    assert "1 of 2 model(s) out of date" in done.stdout


def test_validate_hook_reports_the_bad_field(repo: Path) -> None:
    stage(repo, repo / "models" / "churn" / "pyml.yaml", "type: float64}", "type: flaot64}")
    bad = try_repo("pymlc-validate", repo)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "models/churn/pyml.yaml:" in bad.stdout and "inputs[0].type" in bad.stdout
    assert "'float64'" in bad.stdout
    assert "models/tips/pyml.yaml" not in bad.stdout
