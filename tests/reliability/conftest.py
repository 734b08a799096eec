"""The reliability suite (issue 17, docs/faults.md): every fault case widedeep guards against,
one test each. Everything here is marked ``reliability`` (``pytest -m reliability`` runs it
alone) and runs in CI with the rest of the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)
