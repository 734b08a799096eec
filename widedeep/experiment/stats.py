"""Statistics of the comparison: means with t-intervals, paired differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean, and the half-width of its t confidence interval and the std over seeds."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * std / math.sqrt(len(x)))
    return float(x.mean()), half, std


def paired(results: pl.DataFrame, a: str, b: str, wide: str, deep: str) -> dict[str, float]:
    """Test-AUC difference a - b over seeds at the given levels, paired by seed."""

    def at(arm: str) -> pl.DataFrame:
        lv = {"wide": (wide, "-"), "deep": ("-", deep)}.get(arm, (wide, deep))
        return results.filter(
            (pl.col("arm") == arm)
            & (pl.col("wide_level") == lv[0])
            & (pl.col("deep_level") == lv[1])
        ).select("seed", "test_auc")

    diff = at(a).join(at(b), on="seed", suffix="_b")
    mean, half, std = mean_ci((diff["test_auc"] - diff["test_auc_b"]).to_list())
    return {"mean": mean, "ci95": half, "std": std, "n": diff.height}


def smallest_within(results: pl.DataFrame, arm: str, tolerance: float = 0.001) -> dict[str, Any]:
    """The configuration with the fewest parameters whose mean test AUC is within ``tolerance``
    of the arm's best configuration."""
    per = (
        results.filter(pl.col("arm") == arm)
        .group_by("wide_level", "deep_level")
        .agg(pl.col("test_auc").mean(), pl.col("params").mean(), pl.col("nonzero_params").mean())
        .sort("params")
    )
    best = per["test_auc"].max()
    pick = per.filter(pl.col("test_auc") >= best - tolerance).row(0, named=True)
    return {**pick, "best_auc": best}
