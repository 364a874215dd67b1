"""The adversarial suite: every promise the docs make, attacked at its edges (hostile sizes, bad
bytes, slow peers, signals at the worst moment, secrets, the values pandas and Spark really
produce). Every test in this folder carries the ``adversarial`` marker, so
``pytest -m adversarial`` runs the suite alone; it also runs with everything else in CI. It
also carries ``slow``: hostile sizes, slow peers and signals against real servers, gateways and
CLI processes, which the fast tier leaves out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.adversarial)
            item.add_marker(pytest.mark.slow)
