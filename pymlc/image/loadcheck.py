"""The load check of ``pymlc image``: start the image just built once, hardened as it is served
(``pymlc.image.hardening``: no network, read-only root, the spec's limits), load the model
(``python -m pymlc.runtime_stub.loadcheck``) and exit. An image whose model cannot load there
(a module missing from the requirements, a shared library missing from the system, an artifact
left out) fails the build with the container's own error lines and the fix.

Costs one container start and the model's own load time: no server, no health check, no call.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..compiler.errors import PymlcError
from ..compiler.ir import BuildPlan
from .build import BuiltImage
from .hardening import model_container_options
from .running import logs_tail, wait_exit

__all__ = [
    "LABEL",
    "LIBRARY_PACKAGES",
    "LOAD_TIMEOUT",
    "PIP_NAMES",
    "LoadCheckError",
    "LoadChecked",
    "check_model_loads",
    "diagnose",
    "untag",
]

LABEL = "pymlc.loadcheck"
LOAD_TIMEOUT = 300.0
ENTRYPOINT = ["python", "-m", "pymlc.runtime_stub.loadcheck"]
_LOG_TAIL = 15

# Modules whose pip package has another name (the fix names the package to add).
PIP_NAMES = {
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "Crypto": "pycryptodome",
    "cv2": "opencv-python-headless",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "google.protobuf": "protobuf",
    "jwt": "PyJWT",
    "PIL": "Pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "PyYAML",
}
# Shared libraries models often miss on a slim base -> the Debian package that has them.
LIBRARY_PACKAGES = {
    "libgomp.so.1": "libgomp1",
    "libGL.so.1": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libsndfile.so.1": "libsndfile1",
    "libgfortran.so.5": "libgfortran5",
    "libopenblas.so.0": "libopenblas0",
    "libsqlite3.so.0": "libsqlite3-0",
}
_MODULE = re.compile(r"No module named '([^']+)'")
_LIBRARY = re.compile(r"([\w.+-]+\.so(?:\.[\w.]+)?): cannot open shared object file")


class LoadCheckError(PymlcError):
    """The model does not load in its image: the container's last lines and the fix."""

    def __init__(self, message: str, log: list[str], fix: str) -> None:
        super().__init__(f"{message}\n{fix}")
        self.message = message
        self.log = log
        self.fix = fix


@dataclass(frozen=True)
class LoadChecked:
    """A model that loaded in its image: how long the container took, start to exit."""

    seconds: float
    log: tuple[str, ...]


def check_model_loads(client: Any, image: str, plan: BuildPlan, *,
                      timeout: float = LOAD_TIMEOUT) -> LoadChecked:
    """Start ``image`` once with the model's serving hardening and load the model.

    Args:
        client: a ``docker.DockerClient``.
        image: the image id or tag (either target: both hold the runtime and the model).
        plan: the model's plan (its serving limits, requirements and setup script).
        timeout: seconds the load may take.

    Raises:
        LoadCheckError: the model did not load, or not in time; with the fix.
    """
    import docker

    started = time.monotonic()
    name = f"pymlc-loadcheck-{plan.name}-{uuid.uuid4().hex[:8]}"
    options = model_container_options(cpus=plan.serving.cpus, memory_mb=plan.serving.memory_mb)
    try:
        container = client.containers.run(image, [], entrypoint=ENTRYPOINT, detach=True,
                                          name=name, labels={LABEL: plan.name}, **options)
    except docker.errors.DockerException as exc:
        raise LoadCheckError(f"cannot start the image to load the model: {exc}", [],
                             "is the Docker engine healthy? (`docker info`)") from exc
    try:
        code = wait_exit(container, timeout)
        log = logs_tail(container, _LOG_TAIL)
        if code is None:
            raise LoadCheckError(f"the model did not load within {timeout:.0f} s", log,
                                 "a model that takes longer needs `--load-timeout S`; one"
                                 " that waits for the network cannot load (the container has"
                                 " none): ship its files in the spec's folder")
        if code != 0:
            raise LoadCheckError("the model does not load in the image", log,
                                 diagnose(log, plan, oom=_oom_killed(container)))
        return LoadChecked(time.monotonic() - started, tuple(log))
    finally:
        _remove(container)


def diagnose(log: list[str], plan: BuildPlan, *, oom: bool = False) -> str:
    """The fix for a failed load, from the container's output."""
    text = "\n".join(log)
    if oom:
        return (f"the container ran out of memory loading the model: raise serving.memory_mb"
                f" (now {plan.serving.memory_mb} MiB) in the spec")
    module = _MODULE.findall(text)
    if module:
        return _missing_module(module[-1], plan)
    library = _LIBRARY.findall(text)
    if library:
        return _missing_library(library[-1], plan)
    return ("fix the error above: the model's import or constructor fails in the image (it"
            " has no network, a read-only root and only /tmp to write to); `pymlc validate`"
            " loads it on this machine")


def _missing_module(module: str, plan: BuildPlan) -> str:
    package = next((pip for name, pip in PIP_NAMES.items()
                    if module == name or module.startswith(name + ".")), module.split(".")[0])
    where = plan.model.requirements
    if where:
        return (f"the image lacks the module `{module}`: add `{package}` (the pip package"
                f" that provides it) to {where}, then run `pymlc image` again")
    return (f"the image lacks the module `{module}`: list `{package}` (the pip package that"
            " provides it) in a requirements.txt beside pyml.yaml and set"
            " `model.requirements: requirements.txt`, then run `pymlc image` again")


def _missing_library(library: str, plan: BuildPlan) -> str:
    package = LIBRARY_PACKAGES.get(library)
    named = f"the Debian package `{package}`" if package else \
        f"the Debian package that provides it (`apt-file search {library}` names it)"
    command = (f"apt-get update && apt-get install -y --no-install-recommends"
               f" {package or '<package>'} && rm -rf /var/lib/apt/lists/*")
    if plan.model.setup:
        where = f"add `{command}` to {plan.model.setup} (model.setup)"
    else:
        where = (f"write `{command}` into a setup.sh beside pyml.yaml and set"
                 " `model.setup: setup.sh` (it runs as root in the image, before pip)")
    return f"the image lacks the shared library {library}, from {named}: {where}"


def _oom_killed(container: Any) -> bool:
    try:
        container.reload()
    except Exception:
        return False
    return bool(container.attrs.get("State", {}).get("OOMKilled"))


def _remove(container: Any) -> None:
    import docker

    try:
        container.remove(force=True)
    except docker.errors.DockerException:
        pass


def untag(client: Any, built: BuiltImage) -> None:
    """Remove a built image's tags after a failed load check (its layers stay cached).

    A model that cannot load must not be found under its tags (by ``pymlc gateway``, a push):
    ``pymlc image`` exits 1 and leaves no image.
    """
    import docker

    for tag in built.tags:
        try:
            client.api.remove_image(tag, noprune=True)
        except docker.errors.DockerException:
            pass
