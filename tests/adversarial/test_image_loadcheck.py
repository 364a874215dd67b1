"""``pymlc image`` proves that the model loads in the image it built (issue 20, item 11): the
image is started once, hardened as it is served, and the model loaded. A model that imports a
module missing from its requirements, or opens a shared library missing from the system, fails
the command (exit 1) with the container's error lines and the fix, and its tags are removed;
the fix given for the library, applied, makes the image load.

Real builds of small models (each test's spec in its own folder with its own repository, their
images removed afterwards) with the real CLI.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_models import (
    ROOT,
    containers_of,
    pymlc,
    remove_images,
    unique_repository,
    write_model,
)

from pymlc.compiler.pipeline import compile_spec
from pymlc.image.hardening import PIDS_LIMIT
from pymlc.image.loadcheck import LABEL, diagnose

pytestmark = pytest.mark.docker

# fare-estimator's requirements: their pip layer is usually in the engine's cache already.
REQUIREMENTS = "scikit-learn>=1.4,<2\njoblib>=1.3\n"

MODEL = '''
import pathlib

import pandas as pd

from pymlc import DataFrameModel

LOAD

class Model(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        INIT

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": df["x"]})
'''

# Refuses to load unless it runs as `pymlc image` promises: no network, a read-only root, no
# capabilities, no privilege escalation, the spec's memory limit and the process limit.
HARDENED = f'''
        cgroup = pathlib.Path("/sys/fs/cgroup")
        status = pathlib.Path("/proc/self/status").read_text()
        seen = {{
            "net": sorted(p.name for p in pathlib.Path("/sys/class/net").iterdir()),
            "caps": "CapEff:\\t0000000000000000" in status,
            "no_new_privs": "NoNewPrivs:\\t1" in status,
            "memory": (cgroup / "memory/memory.limit_in_bytes").read_text().strip(),
            "pids": (cgroup / "pids/pids.max").read_text().strip(),
        }}
        try:
            pathlib.Path("/opt/pyml/model/written").write_text("x")
            seen["read_only"] = False
        except OSError:
            seen["read_only"] = True
        wanted = {{"net": ["lo"], "caps": True, "no_new_privs": True,
                   "memory": str(320 * 1024 * 1024), "pids": "{PIDS_LIMIT}",
                   "read_only": True}}
        if seen != wanted:
            raise RuntimeError(f"not hardened: {{seen}}")
'''


@pytest.fixture()
def make_spec(tmp_path: Path, engine: Any) -> Iterator[Callable[..., Path]]:
    repositories: list[str] = []

    def make(*, load: str = "", init: str = "pass", model: str = "", sections: str = "",
             files: dict[str, str] | None = None) -> Path:
        repositories.append(unique_repository("loadcheck"))
        folder = tmp_path / repositories[-1].rpartition("/")[2]
        return write_model(folder, repository=repositories[-1], entrypoint="model:Model",
                           code=MODEL.replace("LOAD", load).replace("INIT", init),
                           model=model, sections=sections, files=files)

    yield make
    left = containers_of(engine, LABEL, repositories)
    for repository in repositories:
        remove_images(engine, repository)
    assert not left, left


def _image(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = pymlc("image", str(spec), *args)
    assert "Traceback (most recent call last)" not in done.stderr.split("output:")[0], \
        done.stderr
    return done


def _tags(engine: Any, spec: Path) -> list[str]:
    repository = compile_spec(spec).plan.image.repository
    return [tag for image in engine.images.list(name=repository) for tag in image.tags]


def test_a_module_missing_from_the_requirements_fails_with_the_fix(
        engine: Any, make_spec: Callable[..., Path]) -> None:
    spec = make_spec(load="import lightgbm", model="  requirements: requirements.txt\n",
                     files={"requirements.txt": REQUIREMENTS})
    done = _image(spec)
    assert done.returncode == 1, done.stderr
    text = " ".join(done.stderr.split())
    assert "the model does not load in the image" in text
    assert "ModuleNotFoundError: No module named 'lightgbm'" in text  # the container's lines
    assert ("fix: the image lacks the module `lightgbm`: add `lightgbm` (the pip package that"
            " provides it) to requirements.txt, then run `pymlc image` again") in text
    assert _tags(engine, spec) == [], "an image whose model cannot load must not be tagged"

    done = _image(spec, "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["step"] == "load check"
    assert "add `lightgbm`" in report["fix"]
    assert any("No module named 'lightgbm'" in line for line in report["log"])

    done = _image(spec, "--no-load-check")
    assert done.returncode == 0, done.stderr
    assert "the model loads" not in done.stderr
    assert len(_tags(engine, spec)) == 2


def test_a_missing_shared_library_is_named_and_the_fix_works(
        engine: Any, make_spec: Callable[..., Path]) -> None:
    spec = make_spec(load="import ctypes", init='ctypes.CDLL("libsndfile.so.1")')
    done = _image(spec)
    assert done.returncode == 1, done.stderr
    text = " ".join(done.stderr.split())
    assert "OSError: libsndfile.so.1: cannot open shared object file" in text
    fix = ("fix: the image lacks the shared library libsndfile.so.1, from the Debian package"
           " `libsndfile1`: write `apt-get update && apt-get install -y"
           " --no-install-recommends libsndfile1 && rm -rf /var/lib/apt/lists/*` into a"
           " setup.sh beside pyml.yaml and set `model.setup: setup.sh`")
    assert fix in text, text

    # The fix, as given, makes the image load.
    command = fix.split("write `")[1].split("`")[0]
    (spec.parent / "setup.sh").write_text(command + "\n")
    spec.write_text(spec.read_text().replace("  entrypoint: model:Model\n",
                                             "  entrypoint: model:Model\n"
                                             "  setup: setup.sh\n"))
    done = _image(spec)
    assert done.returncode == 0, done.stderr
    assert "the model loads in the image" in done.stderr


def test_the_load_check_runs_hardened(engine: Any, make_spec: Callable[..., Path]) -> None:
    spec = make_spec(init=HARDENED, sections="serving:\n  memory_mb: 320\n")
    done = _image(spec, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["load_check"]["ok"] is True


def test_the_fix_names_the_pip_package_of_a_module() -> None:
    plan = compile_spec(ROOT / "specs" / "fare-estimator" / "pyml.yaml").plan
    fix = diagnose(["ModuleNotFoundError: No module named 'sklearn.ensemble'"], plan)
    assert "add `scikit-learn` (the pip package that provides it) to requirements.txt" in fix
    fix = diagnose(["ImportError: libgomp.so.1: cannot open shared object file: No such file"
                    " or directory"], plan)
    assert "libgomp.so.1, from the Debian package `libgomp1`" in fix
    fix = diagnose(["OSError: libunknown.so.7: cannot open shared object file"], plan)
    assert "`apt-file search libunknown.so.7` names it" in fix
    assert "raise serving.memory_mb (now 1024 MiB)" in diagnose([], plan, oom=True)
