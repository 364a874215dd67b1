"""The test tiers are enforced: a test that uses the Docker engine or starts Spark without its
marker fails (``tests/support/tier_guard.py``). Each case runs a small test file in a child
pytest with the guard loaded, as the suite loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tier_guard import pymlc_tier, site

docker_socket = site.docker_socket
executable_tier = site.executable_tier

SUPPORT = Path(__file__).resolve().parent / "support"

CONFTEST = f"""
import sys

import pytest

sys.path.insert(0, {str(SUPPORT)!r})
pytest_plugins = ["tier_guard"]


@pytest.fixture(scope="session")
def engine():
    return "no engine: the guard judges the request, not the fixture's work"
"""

INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
markers =
    docker: uses the Docker engine
    spark: starts Spark
    slow: long
"""

TESTS = """
import os
import socket
import subprocess
import sys

import pytest

CONNECT = '''
import socket
client = socket.socket(socket.AF_UNIX)
try:
    client.connect(DOCKER_SOCKET)
except OSError:
    pass  # an engine that is down was still asked for
client.close()
'''
JAVA = '''
import subprocess
try:
    subprocess.run(["java", "-version"], capture_output=True)
except FileNotFoundError:
    pass  # asked for all the same
'''


def _child(code, **kwargs):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stderr


def _pymlc(*args, **kwargs):
    done = subprocess.run([sys.executable, "-m", "pymlc", *args], capture_output=True, text=True,
                          **kwargs)
    assert done.returncode == 0, done.stderr


def test_docker_unmarked():
    exec(CONNECT)


@pytest.mark.docker
def test_docker_marked():
    exec(CONNECT)


def test_docker_in_a_child_unmarked():
    _child(CONNECT)


def test_java_in_a_grandchild_unmarked():
    _child(JAVA)


@pytest.mark.spark
def test_java_in_a_grandchild_marked():
    _child(JAVA)


def test_pymlc_batch_with_an_environment_of_its_own_unmarked():
    _pymlc("batch", "--help", env={"PATH": os.environ["PATH"]})


def test_pymlc_image_help_unmarked():
    _pymlc("image", "--help")  # a Docker command that never reaches the engine


def test_engine_fixture_unmarked(engine):
    raise AssertionError("the guard must stop this test before it runs")


@pytest.mark.docker
def test_engine_fixture_marked(engine):
    pass


def test_failing_and_unmarked():
    exec(CONNECT)
    assert False, "its own failure"
"""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """Runs the small test file once; returns each test's outcome and the report text."""
    folder = tmp_path_factory.mktemp("tiers")
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text(INI)
    (folder / "test_cases.py").write_text(TESTS.replace("DOCKER_SOCKET", repr(docker_socket())))
    done = subprocess.run([sys.executable, "-m", "pytest", "-rA", "test_cases.py"], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    outcomes = {}
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASSED", "FAILED", "ERROR") and "::" in rest:
            outcomes[rest.split("::")[1].split(" ")[0]] = word
    return outcomes, text


# (test in TESTS, its outcome, a piece of the report it must give, or "")
CASES = [
    ("test_docker_unmarked", "FAILED", "test_cases.py::test_docker_unmarked: it uses the Docker"
     " engine (connected to {socket}) but has no `docker` marker. Mark it (@pytest.mark.docker,"),
    ("test_docker_marked", "PASSED", ""),
    ("test_docker_in_a_child_unmarked", "FAILED",
     "(connected to {socket} in child `{python} -c"),
    ("test_java_in_a_grandchild_unmarked", "FAILED", "it starts Spark (or Java for it) (started"
     " `java -version` in child `{python} -c"),
    ("test_java_in_a_grandchild_marked", "PASSED", ""),
    # A child started with an environment of its own cannot report: its command is judged.
    ("test_pymlc_batch_with_an_environment_of_its_own_unmarked", "FAILED",
     "(started `{python} -m pymlc batch`) but has no `spark` marker. Mark it (@pytest.mark.spark"),
    ("test_pymlc_image_help_unmarked", "PASSED", ""),  # only real use counts
    # The fixture closure is checked before the test runs: an error in setup.
    ("test_engine_fixture_unmarked", "ERROR",
     "it uses the Docker engine (fixture `engine`) but has no `docker` marker"),
    ("test_engine_fixture_marked", "PASSED", ""),
    ("test_failing_and_unmarked", "FAILED", "test tiers"),
]


@pytest.mark.parametrize(("test", "expected", "says"), CASES, ids=[c[0] for c in CASES])
def test_the_guard(outcome: tuple[dict[str, str], str], test: str, expected: str,
                   says: str) -> None:
    outcomes, text = outcome
    assert outcomes[test] == expected, text
    assert says.format(socket=docker_socket(), python=sys.executable) in text


def test_the_guard_stops_an_unmarked_test_before_it_runs_and_keeps_a_failure(
        outcome: tuple[dict[str, str], str]) -> None:
    _, text = outcome
    assert "the guard must stop this test before it runs" not in text
    assert "its own failure" in text


@pytest.mark.parametrize(("command", "tier"), [
    (["/usr/bin/docker", "build", "."], "docker"),
    (["/opt/spark/bin/spark-submit", "job.py"], "spark"),
    (["java", "-version"], "spark"),
    (["git", "status"], None),
])
def test_executables_that_are_docker_or_spark(command: list[str], tier: str | None) -> None:
    assert executable_tier(command) == tier


@pytest.mark.parametrize(("command", "tier"), [
    ([sys.executable, "-m", "pymlc", "batch", "spec.yaml"], "spark"),
    (["/venv/bin/pymlc", "image", "spec.yaml"], "docker"),
    ([sys.executable, "-m", "pymlc", "verify"], "docker"),
    ([sys.executable, "-m", "pymlc", "gateway", "routes.json"], "docker"),
    ([sys.executable, "-m", "pymlc", "build", "spec.yaml"], None),
    ([sys.executable, "-m", "pymlc.runtime_stub.gateway", "--port", "0"], None),
])
def test_pymlc_commands_that_are_docker_or_spark(command: list[str], tier: str | None) -> None:
    assert pymlc_tier(command) == tier
