"""Helpers of the cache tests (tests/test_cache.py, tests/reliability/test_cache_trust.py): a
toy CSV, a reader of it that counts its calls (each call is a build), and the comparison of two
loaded datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from widedeep.data.readers import READERS

SPLITS = ("train", "valid", "test")


def write_csv(path: Path, n: int = 300, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    pl.DataFrame(
        {
            "shop": rng.choice(["a", "b", "c", "d"], n),
            "hour": rng.integers(0, 24, n),
            "visits": rng.integers(0, 50, n),
            "price": rng.lognormal(1.0, 0.5, n),
            "score": rng.normal(size=n),  # a non-feature column kept beside the splits
            "ts": rng.integers(0, 1000, n),
            "label": rng.integers(0, 2, n),
        }
    ).write_csv(path)


class CountingReader:
    """A test-only reader of ``files.train`` (CSV) that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, cfg: dict[str, Any], root: Path) -> pl.DataFrame | pl.LazyFrame:
        self.calls += 1
        lazy = pl.scan_csv(root / cfg["files"]["train"])
        return lazy if cfg.get("lazy") else lazy.collect()


def register_counting_reader(monkeypatch: pytest.MonkeyPatch) -> CountingReader:
    """A counting reader, registered as dataset ``toy`` for one test (the tests' ``reader``)."""
    counting = CountingReader()
    monkeypatch.setitem(READERS, "toy", counting)
    return counting


def assert_same(a: Any, b: Any) -> None:
    """Two loaded datasets hold the same schema, tensors, bags and extra columns."""
    assert a.schema == b.schema
    for split in SPLITS:
        x, y = a.splits[split], b.splits[split]
        for name in ("dense", "categorical", "crosses", "label"):
            assert torch.equal(getattr(x, name), getattr(y, name)), (split, name)
        assert len(x.bags) == len(y.bags), split
        for (xv, xo), (yv, yo) in zip(x.bags, y.bags, strict=True):
            assert torch.equal(xv, yv) and torch.equal(xo, yo), (split, "bags")
        assert a.extras[split].equals(b.extras[split])
