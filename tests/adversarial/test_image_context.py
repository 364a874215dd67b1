"""Nothing reaches an image that the user did not mean to ship (issue 20, item 1; design
invariant 7): files that look like credentials stay out of the build context and of the built
image, and the user is told which; a symbolic link that leaves the spec's folder fails
``validate``, ``build`` and ``image``; links inside the folder keep working in the image; what
ships is readable by the image's user and writable by nobody but root.

Real files on disk, the real CLI in a subprocess, one real image (built once for the module)
listed from inside with ``docker run --network none``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scratch_models import ROOT, pymlc, remove_images, unique_repository, write_model

from pymlc.compiler.pipeline import compile_spec
from pymlc.compiler.shipping import IGNORE_PATTERNS, SECRET_PATTERNS, scan_model_folder
from pymlc.image import assemble_context

EXAMPLES = "examples:\n  input: examples/input.json\n"

# Loads its weights through an inside folder link and an absolute inside file link.
MODEL = '''
import pathlib

import pandas as pd

from pymlc import DataFrameModel


class Linked(DataFrameModel):
    def __init__(self, artifacts: pathlib.Path) -> None:
        self.scale = float((artifacts / "current" / "scale.txt").read_text())
        self.offset = float((artifacts.parent / "offset.txt").read_text())

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"y": df["x"] * self.scale + self.offset})
'''

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" \
              "-----END OPENSSH PRIVATE KEY-----\n"
SERVICE_ACCOUNT = json.dumps({"type": "service_account", "project_id": "p",
                              "private_key_id": "0", "private_key": "-----BEGIN..."})
KUBE_CONFIG = "apiVersion: v1\nkind: Config\nclusters: []\nusers:\n- name: u\n  user:\n" \
              "    token: abc\n"
AWS = "[default]\naws_access_key_id = AKIA0\naws_secret_access_key = x\n"

# path -> content: every kind of secret the images must never hold.
SECRETS = {
    ".env": "API_KEY=1\n",
    ".env.production": "API_KEY=2\n",
    "sub/deeper/.env": "API_KEY=3\n",
    "id_rsa": PRIVATE_KEY,
    "id_ed25519": PRIVATE_KEY,
    "Keys/ID_ECDSA": PRIVATE_KEY,
    "keys/deploy": PRIVATE_KEY,  # a key whatever its name
    "tls/server.pem": "-----BEGIN CERTIFICATE-----\n",
    "tls/server.key": "key\n",
    "tls/store.p12": "p12\n",
    "tls/store.pfx": "pfx\n",
    ".npmrc": "//registry.npmjs.org/:_authToken=x\n",
    ".pypirc": "[pypi]\npassword = x\n",
    ".netrc": "machine example.com login me password x\n",
    ".git-credentials": "https://me:x@example.com\n",
    ".aws/credentials": AWS,
    ".ssh/config": "Host *\n",
    ".gnupg/pubring.kbx": "gpg\n",
    ".docker/config.json": '{"auths": {"r": {"auth": "eA=="}}}\n',
    ".git/config": "[core]\n",
    ".kube/config": KUBE_CONFIG,
    "kubeconfig": KUBE_CONFIG,
    "artifacts/gcp.json": SERVICE_ACCOUNT,  # recognised by content
    "artifacts/cluster.yaml": KUBE_CONFIG,
    "artifacts/boto.cfg": AWS,
    "credentials.json": '{"installed": {"client_secret": "x"}}\n',
}
# What left out means on stderr: a folder is named once, with a slash.
LEFT_OUT = {".aws/", ".docker/config.json", ".env", ".env.production", ".git-credentials",
            ".gnupg/", ".kube/", ".netrc", ".npmrc", ".pypirc", ".ssh/", "Keys/ID_ECDSA",
            "artifacts/boto.cfg", "artifacts/cluster.yaml", "artifacts/gcp.json",
            "credentials.json", "id_ed25519", "id_rsa", "keys/deploy", "kubeconfig",
            "sub/deeper/.env", "tls/server.key", "tls/server.pem", "tls/store.p12",
            "tls/store.pfx", "config.txt"}
# Files that must ship, among them names close to the secret ones.
SHIPPED = {"pyml.yaml", "model.py", "examples/input.json", "artifacts/v3/scale.txt",
           "offset.txt", "artifacts/id_map.json", "tls/ca.crt", "sub/deeper/env.txt",
           "run.sh", "private.txt"}
LINKS = {"artifacts/current": "v3", "artifacts/offset.txt": "../offset.txt"}


def _model_folder(folder: Path, repository: str) -> Path:
    """A spec folder holding every secret kind, shipped files, inside links and odd modes."""
    spec = write_model(folder, repository=repository, entrypoint="model:Linked", code=MODEL,
                       model="  artifacts: artifacts/\n", sections=EXAMPLES, files={
                           "examples/input.json": '[{"x": 1.0}, {"x": 2.5}]',
                           "artifacts/v3/scale.txt": "3.0", "offset.txt": "0.5",
                           "artifacts/id_map.json": "{}", "tls/ca.crt": "public\n",
                           "sub/deeper/env.txt": "not a secret\n", "run.sh": "#!/bin/sh\n",
                           "private.txt": "mode 0600\n", **SECRETS})
    (folder / "artifacts" / "current").symlink_to("v3")
    (folder / "artifacts" / "offset.txt").symlink_to(folder / "offset.txt")  # absolute
    (folder / "config.txt").symlink_to(".env")  # a link to a secret is left out too
    (folder / "run.sh").chmod(0o777)
    (folder / "private.txt").chmod(0o600)
    (folder / "offset.txt").chmod(0o666)
    (folder / "sub").chmod(0o777)
    return spec


def _tree(folder: Path) -> tuple[set[str], dict[str, str]]:
    files, links = set(), {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            links[rel] = os.readlink(path)
        elif path.is_file():
            files.add(rel)
    return files, links


# --- the context, without an engine --------------------------------------------------------

def test_the_context_holds_no_secret_and_keeps_inside_links(tmp_path: Path) -> None:
    spec = _model_folder(tmp_path / "model", "pymlc-test/context")
    with assemble_context(compile_spec(spec)) as context:
        files, links = _tree(context / "model")
        modes = {p.relative_to(context).as_posix(): stat.S_IMODE(p.lstat().st_mode)
                 for p in context.rglob("*") if not p.is_symlink()}
    assert files == SHIPPED
    assert links == LINKS
    assert modes["model/run.sh"] == 0o755 and modes["model/private.txt"] == 0o644
    assert modes["model/offset.txt"] == 0o644 and modes["model/sub"] == 0o755
    assert not {p: m for p, m in modes.items() if m & 0o022}, "group/world-writable files"
    assert all(m & 0o444 == 0o444 for m in modes.values()), "unreadable for the image's user"


def test_the_scan_names_every_left_out_file(tmp_path: Path) -> None:
    _model_folder(tmp_path / "model", "pymlc-test/scan")
    left_out = {item.path for item in scan_model_folder(tmp_path / "model").left_out}
    assert left_out == LEFT_OUT


def test_dockerignore_leaves_out_the_same_names_aspymlc(tmp_path: Path) -> None:
    """The generated .dockerignore, read by the Docker SDK's own matcher, keeps out exactly
    the files pymlc keeps out by name (content-recognised ones aside)."""
    from docker.utils.build import exclude_paths

    context = tmp_path / "context"
    _model_folder(context / "model", "pymlc-test/dockerignore")
    by_docker = {p.removeprefix("model/") for p in exclude_paths(str(context),
                                                                 list(IGNORE_PATTERNS))
                 if p.startswith("model/") and (context / p).is_file()
                 and not (context / p).is_symlink()}
    by_content = {"keys/deploy", "artifacts/gcp.json", "artifacts/cluster.yaml",
                  "artifacts/boto.cfg"}
    assert by_docker == SHIPPED | by_content
    assert scan_model_folder(context / "model", contents=False).files == sorted(by_docker)


def test_every_pattern_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    assert all(reason for reason in SECRET_PATTERNS.values())
    assert "pymlc/compiler/shipping.py" in readme and "SECRET_PATTERNS" in readme


# --- links that leave the folder ----------------------------------------------------------

@pytest.mark.parametrize("link", ["weights", "other"])
@pytest.mark.parametrize("command", ["validate", "build", "image"])
def test_a_link_out_of_the_folder_fails(tmp_path: Path, command: str, link: str) -> None:
    spec = _model_folder(tmp_path / "model", "pymlc-test/outside")
    outside = tmp_path / "other"
    outside.mkdir()
    (outside / "w.bin").write_text("outside")
    target = Path("/etc/passwd") if link == "weights" else Path("../../other/")
    (spec.parent / "artifacts" / link).symlink_to(target)
    done = pymlc(command, str(spec))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    shown = "/etc/passwd" if link == "weights" else f"../../other ({outside})"
    assert (f"error[E301]: artifacts/{link} is a symbolic link to {shown}, outside the spec's"
            " folder; an image gets only what is inside the folder: copy the file (or folder)"
            " in instead of linking to it, or delete the link") in done.stderr, done.stderr
    assert not (spec.parent / "generated").exists()
    assert "Step 1/" not in done.stderr and "[ 1/" not in done.stderr


def test_a_secret_named_link_out_of_the_folder_is_only_left_out(tmp_path: Path) -> None:
    spec = _model_folder(tmp_path / "model", "pymlc-test/secret-link")
    (spec.parent / ".env").unlink()
    (spec.parent / ".env").symlink_to("/etc/hostname")  # common: .env -> a file elsewhere
    (spec.parent / "config.txt").unlink()  # it would now lead outside through .env
    done = pymlc("validate", str(spec))
    assert done.returncode == 0, done.stderr
    assert ".env" in {item.path for item in scan_model_folder(spec.parent).left_out}


# --- the real image -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repository = unique_repository("secrets")
    spec = _model_folder(tmp_path_factory.mktemp("secrets") / "model", repository)
    yield {"done": pymlc("image", str(spec)), "repository": repository, "spec": spec}
    remove_images(engine, repository)


def _in_image(engine: Any, image: str, *command: str) -> str:
    # Not run(remove=True): the engine may remove a quick container before the SDK reads its
    # output, which then comes back empty. Wait for the exit, read, then remove.
    container = engine.containers.run(image, list(command[1:]), entrypoint=command[0],
                                      network_mode="none", user="10001", detach=True)
    try:
        status = container.wait(timeout=120)
        output: bytes = container.logs(stdout=True, stderr=False)
        assert status["StatusCode"] == 0, container.logs().decode()
        return output.decode()
    finally:
        container.remove(force=True)


# Lists the model's folder from inside the image: files and folders with their modes, links.
LIST = """
import json, os, pathlib
root = pathlib.Path("/opt/pyml/model")
out = {"files": {}, "dirs": {}, "links": {}}
for path in root.rglob("*"):
    rel = path.relative_to(root).as_posix()
    if path.is_symlink():
        out["links"][rel] = os.readlink(path)
    else:
        out["dirs" if path.is_dir() else "files"][rel] = path.lstat().st_mode & 0o7777
print(json.dumps(out))
"""


@pytest.mark.docker
def test_the_image_holds_no_secret(engine: Any, built: dict[str, Any]) -> None:
    done = built["done"]
    assert done.returncode == 0, done.stderr
    found = json.loads(_in_image(engine, f"{built['repository']}:0.1.0", "python", "-c", LIST))
    assert set(found["files"]) == SHIPPED
    assert found["links"] == LINKS
    modes = {**found["files"], **found["dirs"]}
    assert not {p: oct(m) for p, m in modes.items() if m & 0o022}, "group/world-writable"
    assert found["files"]["run.sh"] == 0o755 and found["files"]["private.txt"] == 0o644


@pytest.mark.docker
def test_the_user_is_told_what_was_left_out(built: dict[str, Any]) -> None:
    lines = [line for line in built["done"].stderr.splitlines() if "left out" in line]
    assert len(lines) == 1, built["done"].stderr
    for path in LEFT_OUT:
        assert path in lines[0], (path, lines[0])


@pytest.mark.docker
def test_inside_links_work_in_the_image(engine: Any, built: dict[str, Any]) -> None:
    image = f"{built['repository']}:0.1.0"
    out = _in_image(engine, image, "cat", "/opt/pyml/model/artifacts/current/scale.txt",
                    "/opt/pyml/model/artifacts/offset.txt")
    assert out == "3.00.5"
