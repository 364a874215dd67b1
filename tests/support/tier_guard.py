"""Enforces the test tiers: a test that uses the Docker engine or starts Spark without the
``docker`` or ``spark`` marker fails, so ``-m "not docker and not spark"`` can be trusted.

Two checks, so that neither a fixture nor a new entry point can slip by:

- before a test runs, its fixture closure: a test that requests ``engine`` (the Docker engine)
  or ``spark``/``java`` (the session's SparkSession, Java for Spark), directly or through
  another fixture, needs the marker;
- while it runs (setup, call, teardown), what really happens, in this process and in every
  Python process it starts: ``tier_site/sitecustomize.py`` (on ``PYTHONPATH`` for the whole
  session) reports each connection to the Docker engine's socket and each docker CLI,
  ``spark-submit``, ``spark-class`` or ``java`` process to a log this plugin reads after each
  phase. A child started with an environment of its own (without the log's variable) is judged
  by its command line instead: ``pymlc batch`` (Spark), ``pymlc image|verify|gateway``
  (Docker).

Use found while the session's fixtures are torn down (after the last test) is not blamed on
that test. Loaded by ``tests/conftest.py``; ``tests/test_tiers.py`` tests it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SITE = Path(__file__).resolve().parent / "tier_site"
# Fixtures whose use alone means the tier: the engine itself, the session's SparkSession and
# the Java check that only Spark tests need.
FIXTURE_TIERS = {"engine": "docker", "spark": "spark", "java": "spark"}
PYMLC_TIERS = {"batch": "spark", "image": "docker", "verify": "docker", "gateway": "docker"}
HOW = {"docker": "it uses the Docker engine", "spark": "it starts Spark (or Java for it)"}


def _load_site() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pymlc_tier_site", SITE / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


site = _load_site()
_state: dict[str, Any] = {"log": None, "offset": 0, "last": False}


def pymlc_tier(args: Sequence[str]) -> str | None:
    """The tier of a ``pymlc`` command line (``pymlc CMD`` or ``python -m pymlc CMD``)."""
    if not args:
        return None
    rest = list(args[1:])
    if Path(args[0]).name == "pymlc":
        words = [a for a in rest if not a.startswith("-")]
    elif "-m" in rest[:-1] and rest[rest.index("-m") + 1] == "pymlc":
        words = [a for a in rest[rest.index("-m") + 2:] if not a.startswith("-")]
    else:
        return None
    return PYMLC_TIERS.get(words[0]) if words else None


def _audit_unreported_children(event: str, args: tuple[Any, ...]) -> None:
    # A child whose environment lacks the log's variable cannot report: judge its command.
    if event != "subprocess.Popen" or args[3] is None:
        return
    if site.LOG_ENV in args[3] or os.fsencode(site.LOG_ENV) in args[3]:
        return
    command = [os.fsdecode(a) for a in args[1]] if isinstance(args[1], (list, tuple)) else []
    tier = pymlc_tier(command)
    if tier:
        site.report(tier, "started `" + " ".join(command[:4]) + "`")


def _drain() -> list[tuple[str, str]]:
    """The uses reported since the last call."""
    log: Path | None = _state["log"]
    if log is None or not log.exists():
        return []
    with log.open("rb") as file:
        file.seek(_state["offset"])
        data = file.read()
    complete = data[:data.rfind(b"\n") + 1]
    _state["offset"] += len(complete)
    lines = complete.decode(errors="replace").splitlines()
    return [(tier, evidence) for tier, _, evidence in (line.partition("\t") for line in lines)]


def marked(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers()}


def missing_from_fixtures(item: pytest.Item) -> list[str]:
    """The problems of ``item``'s fixture closure: tier fixtures without their marker."""
    names = getattr(item, "fixturenames", ())
    have = marked(item)
    return [f"{HOW[tier]} (fixture `{name}`) but has no `{tier}` marker"
            for name, tier in FIXTURE_TIERS.items() if name in names and tier not in have]


def explain(item: pytest.Item, problems: list[str]) -> str:
    tiers = sorted({t for t in HOW if any(f"`{t}` marker" in p for p in problems)})
    fix = " and ".join(f"@pytest.mark.{t}" for t in tiers)
    return (f"{item.nodeid}: " + "; ".join(problems) + f". Mark it ({fix}, or `pytestmark ="
            f" pytest.mark.{tiers[0]}` for the module) so the fast tier"
            " (-m \"not docker and not spark and not slow\") leaves it out.")


def pytest_configure(config: pytest.Config) -> None:
    fd, name = tempfile.mkstemp(prefix="pymlc-tiers-", suffix=".log")
    os.close(fd)
    _state.update(log=Path(name), offset=0,
                  saved={k: os.environ.get(k) for k in (site.LOG_ENV, site.PID_ENV, "PYTHONPATH")})
    os.environ[site.LOG_ENV] = name
    os.environ[site.PID_ENV] = str(os.getpid())
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    site.install()
    if not getattr(sys, "_pymlc_tier_children", False):
        sys.addaudithook(_audit_unreported_children)
        sys._pymlc_tier_children = True  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    log: Path | None = _state["log"]
    if log is not None:
        log.unlink(missing_ok=True)
    for key, value in _state.get("saved", {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _state["log"] = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problems = missing_from_fixtures(item)
    if problems:
        pytest.fail(explain(item, problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _drain()  # what happened between tests (collection, another test's stragglers) is no one's
    _state["last"] = nextitem is None
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    found = _drain()
    if call.when == "teardown" and _state["last"]:
        return  # the session's fixtures are torn down here: not this test's doing
    have = marked(item)
    problems = sorted({f"{HOW[tier]} ({evidence}) but has no `{tier}` marker"
                       for tier, evidence in found if tier in HOW and tier not in have})
    if not problems:
        return
    message = explain(item, problems)
    if report.failed:
        report.sections.append(("test tiers", message))
    else:
        report.outcome = "failed"
        report.longrepr = message
