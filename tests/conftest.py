"""Shared fixtures and options. ``pytest --update-golden`` rewrites golden files and expected
diagnostics instead of comparing against them (never the default).

The test tiers (``docker``, ``spark``, ``slow`` markers) are enforced by ``tier_guard``
(tests/support): a test that uses the Docker engine or starts Spark without its marker fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tier_guard"]

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files and expected diagnostics from the current output")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def engine() -> Any:
    """The Docker engine (docker SDK client) with the local base image; fails, never skips."""
    from pymlc.compiler.pipeline import compile_spec
    from pymlc.image import EngineUnavailableError, connect

    problem = client = None
    try:
        client = connect()
    except EngineUnavailableError as exc:
        problem = str(exc)
    if problem is not None:  # failed outside the except block: no exception chain in the report
        pytest.fail(f"these tests need the Docker engine: {problem}", pytrace=False)
    base = compile_spec(SPECS / "digit-net" / "pyml.yaml").plan.image.base
    if not client.images.list(name=base):
        pytest.fail(f"base image {base} is missing (no registry to pull it from): run"
                    " `sudo scripts/base-image` (scripts/setup-docker does)", pytrace=False)
    return client
