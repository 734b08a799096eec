"""The generated data: Criteo-shaped rows, saved once by the parent, loaded by every worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .spec import CLICK_RATE, NUM_DENSE, RESERVED, VALUES, ZIPF_EXPONENT

# -- data ----------------------------------------------------------------------------------------


def zipf_ids(rng: np.random.Generator, values: int, rows: int) -> np.ndarray:
    """Ids 2 .. values + 1 with P(rank k) ~ k^-s: id 2 is the most frequent value, as a
    frequency-sorted vocabulary numbers them."""
    weights = np.arange(1, values + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    ranks = np.searchsorted(cdf, rng.random(rows) * cdf[-1])
    return np.minimum(ranks, values - 1).astype(np.int64) + RESERVED


def calibrated_bias(logit: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean click probability ``rate`` (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) > rate:
            high = mid
        else:
            low = mid
    return (low + high) / 2


def generate(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Criteo-shaped rows: standardized log counts, Zipf ids, labels from a planted logit."""
    rng = np.random.default_rng(seed)
    counts = np.floor(
        rng.lognormal(mean=rng.uniform(0, 3, NUM_DENSE), sigma=1.2, size=(rows, NUM_DENSE))
    )
    dense = np.log1p(counts)
    dense = ((dense - dense.mean(0)) / (dense.std(0) + 1e-6)).astype(np.float32)
    categorical = np.stack([zipf_ids(rng, v, rows) for v in VALUES], axis=1)
    # A learnable signal: per-id effects in a third of the fields, and the dense features.
    logit = dense @ rng.normal(0, 0.3, NUM_DENSE)
    for j in range(0, len(VALUES), 3):
        effects = rng.normal(0, 0.7, VALUES[j] + RESERVED)
        logit += effects[categorical[:, j]]
    logit += calibrated_bias(logit, CLICK_RATE)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {"dense": dense, "categorical": categorical, "label": label}


def save_data(data: dict[str, np.ndarray], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in data.items():
        np.save(folder / f"{name}.npy", array)


def load_data(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy") for name in ("dense", "categorical", "label")}


def cardinalities() -> list[int]:
    """Ids per field including the reserved ones: every system's table sizes."""
    return [v + RESERVED for v in VALUES]
