"""Vocabularies: raw categorical values -> ids, fitted on the training split only."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from widedeep.core.schema import NUM_RESERVED_IDS, OOV_ID, PADDING_ID


def count_values(frame: pl.LazyFrame, expr: pl.Expr) -> pl.LazyFrame:
    """A query counting the non-null values of ``expr``: columns ``[value, count]``."""
    return (
        frame.select(expr.alias("value"))
        .group_by("value")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .filter(pl.col("value").is_not_null())
    )


def merge_counts(*parts: pl.LazyFrame) -> pl.LazyFrame:
    """Counts of several batches -> the counts of all of them."""
    return pl.concat(parts).group_by("value").agg(pl.col("count").sum())


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
        values = table["value"]
        # String values: an Enum of the known values, whose physical code is the id - 2 (a
        # cast is about twice as fast as replace_strict on strings). Other types: a lookup
        # table where null -> 0 is one more entry, so encoding is one hash lookup.
        self._enum = pl.Enum(values) if values.dtype == pl.String else None
        self._old = pl.concat([pl.Series("value", [None], dtype=values.dtype), values])
        self._new = pl.Series(
            "id", [PADDING_ID, *range(NUM_RESERVED_IDS, len(self))], dtype=pl.Int64
        )

    @classmethod
    def from_counts(cls, counts: pl.DataFrame, min_count: int = 1) -> Vocabulary:
        """A vocabulary from ``[value, count]`` training counts (as `count_values` makes)."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        table = (
            counts.filter(pl.col("count") >= min_count)
            .sort(["count", "value"], descending=[True, False])
            .select("value", pl.col("count").cast(pl.Int64))
        )
        return cls(table, min_count)

    @classmethod
    def fit(cls, values: pl.Series, min_count: int = 1) -> Vocabulary:
        counts = count_values(values.to_frame().lazy(), pl.col(values.name)).collect()
        return cls.from_counts(counts, min_count)

    def __len__(self) -> int:
        """The cardinality of the id space, reserved ids included."""
        return self.table.height + NUM_RESERVED_IDS

    def encode(self, expr: pl.Expr) -> pl.Expr:
        """An expression mapping raw values to ids; unknown -> 1, null -> 0."""
        if self._enum is None:
            return expr.replace_strict(self._old, self._new, default=OOV_ID, return_dtype=pl.Int64)
        # Unknown values cast to null: tell them from missing ones by the input.
        known = expr.cast(self._enum, strict=False).to_physical().cast(pl.Int64) + NUM_RESERVED_IDS
        return pl.when(expr.is_null()).then(pl.lit(PADDING_ID, pl.Int64)).otherwise(
            known.fill_null(OOV_ID)
        )

    def save(self, path: Path) -> None:
        self.table.with_columns(pl.lit(self.min_count).alias("min_count")).write_parquet(path)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        table = pl.read_parquet(path)
        min_count = int(table["min_count"][0]) if table.height else 1
        return cls(table.select("value", "count"), min_count)
