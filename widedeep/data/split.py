"""Train / valid / test splits that the same seed always reproduces."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

SPLITS = ("train", "valid", "test")


def random_split(
    frame: pl.DataFrame, ratios: Mapping[str, float], seed: int
) -> dict[str, pl.DataFrame]:
    """Rows assigned at random in the given proportions (e.g. BARS x1's 7:2:1)."""
    names, weights = _check(ratios)
    order = np.random.default_rng(seed).permutation(frame.height)
    bounds = np.round(np.cumsum(weights) * frame.height).astype(int)
    parts = np.split(order, bounds[:-1])
    return {name: frame[np.sort(idx)] for name, idx in zip(names, parts, strict=True)}


def time_split(
    frame: pl.DataFrame, ratios: Mapping[str, float], column: str
) -> dict[str, pl.DataFrame]:
    """Oldest rows train, newest test: how a deployed recommender meets its data."""
    if column not in frame.columns:
        raise ValueError(f"time split: no column {column!r}; columns are {frame.columns}")
    names, weights = _check(ratios)
    ordered = frame.sort(column, maintain_order=True)
    bounds = [0, *np.round(np.cumsum(weights) * frame.height).astype(int)]
    return {name: ordered[bounds[k] : bounds[k + 1]] for k, name in enumerate(names)}


def _check(ratios: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    unknown = sorted(set(ratios) - set(SPLITS))
    if unknown or "train" not in ratios:
        raise ValueError(f"split ratios must name train (and valid, test), got {dict(ratios)}")
    names = [s for s in SPLITS if s in ratios]
    weights = np.array([float(ratios[s]) for s in names])
    if (weights <= 0).any():
        raise ValueError(f"split ratios must be positive, got {dict(ratios)}")
    return names, weights / weights.sum()
