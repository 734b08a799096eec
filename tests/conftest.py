"""Shared fixtures: a tiny schema and random batches that follow it."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

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


# -- the real public files ------------------------------------------------------------------------

NO_REAL_DATA = "real data not found"


# MovieLens 100K's genre columns of u.item, in file order (its README): the fixtures write them
# and the genre-bag tests read them, independently of the reader's own list.
ML_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """A script of benchmarks/ or examples/ imported as module ``name`` (its file's stem), put
    in ``sys.modules`` first: dataclasses look their module up there while being created."""
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def data_root() -> Path:
    """Where the real files are: $WIDEDEEP_DATA_DIR, else ./data (the readers' own default)."""
    return Path(os.environ.get("WIDEDEEP_DATA_DIR") or "data")


def real_data(*files: str) -> Path:
    """The data root holding every one of ``files`` (paths under it); else the test is skipped
    with a reason the summary line below counts."""
    root = data_root()
    absent = [f for f in files if not (root / f).exists()]
    if absent:
        pytest.skip(f"{NO_REAL_DATA}: {absent} under $WIDEDEEP_DATA_DIR={str(root)!r}")
    return root


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """One line saying how many tests skipped for want of the real files, and where they looked:
    a layout without the data shows up in the summary, not only in ``-rs``."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and NO_REAL_DATA in str(r.longrepr[2])
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} real-data test(s) skipped: files not found under "
            f"$WIDEDEEP_DATA_DIR={str(data_root())!r} (see docs/testing.md)",
            yellow=True,
        )


RELIABILITY = os.path.join(os.path.dirname(__file__), "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/reliability/ (the fault cases of docs/faults.md) is marked
    ``reliability``: ``pytest -m reliability`` runs that suite alone. The hook lives here, not in
    a conftest of that folder, because tests import helpers with ``from conftest import``.

    A test marked ``fast_first`` keeps its first parametrized case in the fast suite and has the
    others marked ``slow``: one case shows the rule holds while editing, ``make test`` runs them
    all (each case of a config or reader rule costs a Hydra compose or a read)."""
    first_cases: set[tuple[str, str]] = set()
    for item in items:
        if str(item.path).startswith(RELIABILITY + os.sep):
            item.add_marker(pytest.mark.reliability)
        if item.get_closest_marker("fast_first"):
            test = (str(item.path), getattr(item, "originalname", item.name))
            if test in first_cases:
                item.add_marker(pytest.mark.slow)
            first_cases.add(test)
