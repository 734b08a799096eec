"""Shared fixtures: a tiny schema and random batches that follow it."""

from __future__ import annotations

import os

import pytest

from widedeep import BagField, CategoricalField, CrossField, Schema
from widedeep.core.batch import random_batch  # noqa: F401  (tests import it from here)


@pytest.fixture(autouse=True, scope="session")
def _cache_outside_the_data_root(tmp_path_factory) -> None:
    """Processed-data caches go to a temporary folder, never into the (shared) data root."""
    os.environ["WIDEDEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("widedeep-cache"))


@pytest.fixture
def schema() -> Schema:
    return Schema(
        dense=("price", "age"),
        categorical=(
            CategoricalField("user", 12),
            CategoricalField("item", 9),
            CategoricalField("device", 4),
        ),
        crosses=(CrossField("user_x_item", 30, fields=("user", "item")),),
        bags=(BagField("genres", 7),),
    )


RELIABILITY = os.path.join(os.path.dirname(__file__), "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/reliability/ (the fault cases of docs/faults.md) is marked
    ``reliability``: ``pytest -m reliability`` runs that suite alone. The hook lives here, not in
    a conftest of that folder, because tests import helpers with ``from conftest import``."""
    for item in items:
        if str(item.path).startswith(RELIABILITY + os.sep):
            item.add_marker(pytest.mark.reliability)
