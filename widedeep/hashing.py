"""A stable 64-bit hash that the project owns.

Hashed cross features are saved with a model, so the hash must never change: polars'
``Expr.hash`` and Python's ``hash()`` are not stable across versions or processes. SplitMix64
(Steele et al., 2014) is a fixed, well-mixed bijection on 64-bit integers, vectorised in NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Mix each uint64 into a well-distributed uint64 (wrapping arithmetic)."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_columns(columns: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """Order-sensitive hash of aligned integer columns -> (n,) uint64."""
    if not columns:
        raise ValueError("hash_columns needs at least one column")
    h = splitmix64(np.full(len(columns[0]), seed, dtype=np.uint64))
    for col in columns:
        with np.errstate(over="ignore"):
            h = splitmix64(h ^ splitmix64(np.asarray(col).astype(np.uint64)))
    return h


def bucketize(columns: Sequence[np.ndarray], num_buckets: int, seed: int = 0) -> np.ndarray:
    """Hash aligned id columns into ``[0, num_buckets)`` -> (n,) int64."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    return (hash_columns(columns, seed) % np.uint64(num_buckets)).astype(np.int64)
