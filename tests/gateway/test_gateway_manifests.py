"""``kubernetes.yaml`` and the routes file.

The manifests validate offline against the Kubernetes API schema (``kubernetes-validate
--strict``), say what the issue asks (shared socket volume, gRPC probes on the gateway's port,
the spec's resources, non-root read-only containers), carry hostile text intact, and the pod
they describe runs for real: both containers, started through the Docker engine as the manifest
says, answer an OIP call through the gateway. The routes file: written for a folder of specs,
deterministic, compared by ``pymlc check``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
import yaml
from gateway_support import (
    DIGITS,
    FARE,
    FARE_EXPECTED,
    FARE_ROWS,
    ROOT,
    fare_inputs,
    pymlc,
    serving_images,
)

from pymlc.compiler.pipeline import compile_spec

pytestmark = pytest.mark.slow  # builds and the gateway CLI in child processes

VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
GOLDEN = ROOT / "tests" / "golden"
HOSTILE = 'Fares: "quoted", #not-a-comment, {{ braces }}, \\back\\slash, ünïcødé 🚕'


def _manifest(spec: Path) -> str:
    compiled = compile_spec(spec)
    return next(a.content for a in compiled.artifacts if a.path == "kubernetes.yaml")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATE), "--strict", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)


def _hostile_spec(folder: Path) -> Path:
    shutil.copytree(FARE, folder, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    spec = folder / "pyml.yaml"
    text = spec.read_text().replace(
        "description: Estimated fare of a taxi trip, from its distance, city and pickup hour",
        f"description: {json.dumps(HOSTILE, ensure_ascii=False)}")
    text = text.replace("  socket: /run/pyml/model.sock\n  port: 8500\n",
                        "  socket: /var/run/fares/api.sock\n  port: 9001\n  cpus: 1.5\n"
                        "  memory_mb: 512\n")
    spec.write_text(text)
    return spec


@pytest.mark.parametrize("case", ["fare-estimator", "digit-net"])
def test_the_golden_manifests_validate(case: str) -> None:
    done = _validate(GOLDEN / case / "kubernetes.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed for resource deployment/" in done.stdout
    assert "passed for resource service/" in done.stdout


def test_a_hostile_spec_validates_and_says_what_it_should(tmp_path: Path) -> None:
    text = _manifest(_hostile_spec(tmp_path / "fares"))
    (tmp_path / "kubernetes.yaml").write_text(text)
    done = _validate(tmp_path / "kubernetes.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    deployment, service = yaml.safe_load_all(text)
    assert deployment["metadata"]["annotations"]["pymlc.io/description"] == HOSTILE
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    model, gateway = pod["containers"]
    for container in (model, gateway):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "socket", "mountPath": "/var/run/fares"} in container["volumeMounts"]
    assert {"name": "socket", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in \
        pod["volumes"]
    assert model["args"] == ["--socket", "/var/run/fares/api.sock"]
    assert model["resources"] == {"requests": {"cpu": "1500m", "memory": "512Mi"},
                                  "limits": {"cpu": "1500m", "memory": "512Mi"}}
    assert gateway["command"][:3] == ["python", "-m", "pymlc.runtime_stub.gateway"]
    assert "fare-estimator@1.4.0=unix:/var/run/fares/api.sock" in gateway["command"]
    assert gateway["ports"] == [{"name": "grpc", "containerPort": 9001, "protocol": "TCP"}]
    assert gateway["readinessProbe"]["grpc"] == {"port": 9001}
    assert gateway["livenessProbe"]["grpc"] == {"port": 9001, "service": "pymlc.gateway"}
    assert service["spec"]["ports"][0]["port"] == 9001
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


# --- the pod, for real --------------------------------------------------------------------



@pytest.fixture
def pod(engine: Any) -> Iterator[dict[str, Any]]:
    images = serving_images(engine)
    folder = Path(tempfile.mkdtemp(prefix="pod-"))
    os.chown(folder, 10001, 10001)
    started: list[Any] = []
    try:
        yield {"images": images, "folder": folder, "started": started}
    finally:
        for container in started:
            container.remove(force=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.docker
def test_the_pod_runs_as_the_manifest_says(engine: Any, pod: dict[str, Any]) -> None:
    deployment, _ = yaml.safe_load_all(_manifest(FARE / "pyml.yaml"))
    model, gateway = deployment["spec"]["template"]["spec"]["containers"]
    socket_dir = model["volumeMounts"][0]["mountPath"]
    common = {"detach": True, "network_mode": "none", "read_only": True, "user": "10001:10001",
              "tmpfs": {"/tmp": "size=16m"}, "cap_drop": ["ALL"],
              "security_opt": ["no-new-privileges"], "labels": {"pymlc.test": "pod"},
              "volumes": {str(pod["folder"]): {"bind": socket_dir, "mode": "rw"}}}
    pod["started"].append(engine.containers.run(model["image"], model["args"], **common))
    # The cluster reaches the gateway over TCP; here, with no network, over a socket beside.
    command = [*gateway["command"], "--socket", f"{socket_dir}/gateway.sock"]
    pod["started"].append(engine.containers.run(gateway["image"], entrypoint=command[:1],
                                                command=command[1:], **common))
    target = f"unix:{pod['folder']}/gateway.sock"
    client = triton.InferenceServerClient(target)
    deadline = time.monotonic() + 60
    while not _ready(client):
        assert time.monotonic() < deadline, [c.logs().decode() for c in pod["started"]]
        time.sleep(0.2)
    result = client.infer("fare-estimator", fare_inputs(FARE_ROWS))
    np.testing.assert_allclose(result.as_numpy("fare"), FARE_EXPECTED, rtol=1e-9)


def _ready(client: triton.InferenceServerClient) -> bool:
    try:
        return bool(client.is_server_ready())
    except Exception:  # the socket is not there yet
        return False


# --- the routes file ------------------------------------------------------------------------

def _models(root: Path) -> Path:
    models = root / "models"
    for source, dest in ((FARE, "pricing/fare"), (DIGITS, "vision/digits")):
        shutil.copytree(source, models / dest,
                        ignore=shutil.ignore_patterns("generated", "__pycache__"))
    return models


def test_a_folder_build_writes_routes_beside_the_specs(tmp_path: Path) -> None:
    models = _models(tmp_path)
    done = pymlc("build", models)
    assert done.returncode == 0, done.stderr
    text = (models / "pyml-routes.json").read_text()
    routes = json.loads(text)
    assert [(m["name"], m["version"], m["image"], m["spec"]) for m in routes["models"]] == [
        ("digit-net", "2.0.1", "digit-net:2.0.1", "vision/digits/pyml.yaml"),
        ("fare-estimator", "1.4.0", "registry.example.com/ml/fare-estimator:1.4.0",
         "pricing/fare/pyml.yaml")]
    assert routes["models"][1]["limits"] == {"cpus": 1.0, "memory_mb": 1024,
                                             "max_message_bytes": 16777216}
    assert str(tmp_path) not in text
    # The same tree elsewhere gives the same bytes.
    other = _models(tmp_path / "elsewhere")
    assert pymlc("build", other).returncode == 0
    assert (other / "pyml-routes.json").read_text() == text
    assert pymlc("check", models).returncode == 0


def test_check_finds_stale_routes(tmp_path: Path) -> None:
    models = _models(tmp_path)
    assert pymlc("build", models, "-o", tmp_path / "out").returncode == 0
    assert (tmp_path / "out" / "routes.json").is_file()
    assert not (models / "pyml-routes.json").exists()
    spec = models / "vision" / "digits" / "pyml.yaml"
    spec.write_text(spec.read_text() + "  cpus: 2.0\n")  # the last section is serving:
    done = pymlc("check", models, "-o", tmp_path / "out", "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["routes"]["status"] == "stale"
    assert '-        "cpus": 1.0,' in report["routes"]["diff"]
    assert '+        "cpus": 2.0,' in report["routes"]["diff"]


def test_a_single_spec_has_no_routes_file(tmp_path: Path) -> None:
    assert pymlc("build", FARE / "pyml.yaml", "-o", tmp_path / "out").returncode == 0
    assert not (tmp_path / "out" / "routes.json").exists()


def test_gateway_usage_errors(tmp_path: Path) -> None:
    done = pymlc("gateway", tmp_path / "routes.json")
    assert done.returncode == 2 and "--socket PATH and/or --port N" in done.stderr
    done = pymlc("gateway", tmp_path / "routes.json", "--port", "0")
    assert done.returncode == 1 and "cannot read the routes file" in done.stderr
