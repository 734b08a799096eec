"""A stable 64-bit hash that the project owns.

Hashed cross features are saved with a model, so the hash must never change: polars'
``Expr.hash`` and Python's ``hash()`` are not stable across versions or processes. SplitMix64
(Steele et al., 2014) is a fixed, well-mixed bijection on 64-bit integers, vectorised in NumPy.
`bucketize_expr` runs the same NumPy code inside a polars query (batch by batch, so it also
works in a streaming query).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Mix each uint64 into a well-distributed uint64 (wrapping arithmetic)."""
    z = np.asarray(x).astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash_columns(columns: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """Order-sensitive hash of aligned non-negative integer columns -> (n,) uint64."""
    if not columns:
        raise ValueError("hash_columns needs at least one column")
    h = splitmix64(np.full(len(columns[0]), seed, dtype=np.uint64))
    for col in columns:
        h = splitmix64(h ^ splitmix64(col))
    return h


def bucketize(columns: Sequence[np.ndarray], num_buckets: int, seed: int = 0) -> np.ndarray:
    """Hash aligned id columns into ``[0, num_buckets)`` -> (n,) int64."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    return (hash_columns(columns, seed) % np.uint64(num_buckets)).astype(np.int64)


def bucketize_expr(columns: Sequence[pl.Expr], num_buckets: int, seed: int = 0) -> pl.Expr:
    """`bucketize` as a polars expression over integer expressions -> Int64.

    A null input hashes as 0: polars may hand the function nulls for rows an enclosing
    ``when/then`` masks out, and a cross masks rows with a missing component anyway.
    """
    if num_buckets < 1:  # fail when the query is built, not when it runs
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    names = [f"_{k}" for k in range(len(columns))]

    def run(packed: pl.Series) -> pl.Series:
        cols = [packed.struct.field(n).fill_null(0).to_numpy() for n in names]
        return pl.Series(bucketize(cols, num_buckets, seed), dtype=pl.Int64)

    packed = pl.struct([c.alias(n) for c, n in zip(columns, names, strict=True)])
    return packed.map_batches(run, return_dtype=pl.Int64, is_elementwise=True)
