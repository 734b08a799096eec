"""Vocabularies: raw categorical values -> ids, fitted on the training split only."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .features import NUM_RESERVED_IDS, OOV_ID, PADDING_ID


class Vocabulary:
    """Values seen at least ``min_count`` times in training, most frequent first.

    Ids: 0 = missing (null), 1 = unseen or rarer than ``min_count``, 2.. = known values. The
    order (count descending, then value) is deterministic, so the same data gives the same ids.
    """

    def __init__(self, table: pl.DataFrame, min_count: int = 1) -> None:
        if table.columns != ["value", "count"]:
            raise ValueError(f"vocabulary table needs columns [value, count], got {table.columns}")
        self.table = table
        self.min_count = min_count

    @classmethod
    def fit(cls, values: pl.Series, min_count: int = 1) -> Vocabulary:
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = (
            values.drop_nulls()
            .value_counts(name="count")
            .rename({values.name: "value"})
            .filter(pl.col("count") >= min_count)
            .sort(["count", "value"], descending=[True, False])
        )
        return cls(counts.select("value", pl.col("count").cast(pl.Int64)), min_count)

    def __len__(self) -> int:
        """The cardinality of the id space, reserved ids included."""
        return self.table.height + NUM_RESERVED_IDS

    def encode(self, expr: pl.Expr) -> pl.Expr:
        """An expression mapping raw values to ids; unknown -> 1, null -> 0."""
        ids = pl.int_range(NUM_RESERVED_IDS, len(self), eager=True, dtype=pl.Int64)
        # replace_strict sends null to the default too: missing must stay 0, not unseen.
        known = expr.replace_strict(self.table["value"], ids, default=OOV_ID, return_dtype=pl.Int64)
        return pl.when(expr.is_null()).then(pl.lit(PADDING_ID, pl.Int64)).otherwise(known)

    def save(self, path: Path) -> None:
        self.table.with_columns(pl.lit(self.min_count).alias("min_count")).write_parquet(path)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        table = pl.read_parquet(path)
        min_count = int(table["min_count"][0]) if table.height else 1
        return cls(table.select("value", "count"), min_count)
