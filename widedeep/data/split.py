"""Train / valid / test splits that the same seed always reproduces."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

SPLITS = ("train", "valid", "test")
# Ratios add up to 1 within float rounding (0.7 + 0.2 + 0.1 is 0.9999999999999999).
TOLERANCE = 1e-6


def random_split(
    frame: pl.DataFrame, ratios: Mapping[str, float], seed: int
) -> dict[str, pl.DataFrame]:
    """Rows assigned at random in the given proportions (e.g. BARS x1's 7:2:1)."""
    names, weights = check_ratios(ratios)
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
    names, weights = check_ratios(ratios)
    ordered = frame.sort(column, maintain_order=True)
    bounds = [0, *np.round(np.cumsum(weights) * frame.height).astype(int)]
    return {name: ordered[bounds[k] : bounds[k + 1]] for k, name in enumerate(names)}


def check_ratios(ratios: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """The split names and their shares: each > 0, together 1. Ratios that do not add up to 1
    are refused, not rescaled: {train: 0.8, valid: 0.2, test: 0.2} is a typo, not 4:1:1."""
    unknown = sorted(set(ratios) - set(SPLITS))
    if unknown or "train" not in ratios:
        raise ValueError(f"split ratios must name train (and valid, test), got {dict(ratios)}")
    names = [s for s in SPLITS if s in ratios]
    weights = np.array([float(ratios[s]) for s in names])
    if (weights <= 0).any():
        raise ValueError(f"split ratios must be positive, got {dict(ratios)}")
    total = float(weights.sum())
    if abs(total - 1.0) > TOLERANCE:
        given = ", ".join(f"{s}: {float(ratios[s]):g}" for s in names)
        raise ValueError(f"data.split.ratios {{{given}}} sum to {total:g}, not 1: give each "
                         "split's share of the rows, adding up to 1")
    return names, weights / total
