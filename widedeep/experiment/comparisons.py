"""Paired comparisons of two arms: over (data split, seed) pairs, with a t-interval and a
hierarchical bootstrap over data splits, seeds and test rows; Holm across a sweep's cells.

The primary comparison of a dataset (named before the runs: the joint model against the best
ensemble at the main levels) is reported uncorrected; the same comparison at every other cell
of the sweep is a family, corrected by Holm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from widedeep.experiment import stats
from widedeep.experiment.plan import Cell, levels_of
from widedeep.experiment.results import Measured

PRIMARY = ("joint", "ens_best")


def pairs(
    measured: Measured, a: str, b: str, wide_level: str, deep_level: str
) -> list[tuple[Cell, Cell]]:
    """Cells of arms a and b at the same data split and seed."""
    la, lb = levels_of(a, wide_level, deep_level), levels_of(b, wide_level, deep_level)
    index = {(c.arm, c.data_seed, c.seed, c.wide_level, c.deep_level): c for c in measured.outputs}
    out = []
    for (arm, data_seed, seed, w, d), cell in index.items():
        if arm == a and (w, d) == la:
            other = index.get((b, data_seed, seed, *lb))
            if other is not None:
                out.append((cell, other))
    return sorted(out, key=lambda p: (p[0].data_seed or 0, p[0].seed))


def compare(
    measured: Measured,
    a: str,
    b: str,
    wide_level: str,
    deep_level: str,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """a − b in test AUC: mean over pairs with the 95% t-interval's half-width (``ci``) and
    p, and, with ``n_boot``, the hierarchical bootstrap's interval and p."""
    matched = pairs(measured, a, b, wide_level, deep_level)
    if not matched:
        return {"a": a, "b": b, "n": 0}
    out = measured.outputs
    diffs = [out[ca].scores()["auc"] - out[cb].scores()["auc"] for ca, cb in matched]
    row: dict[str, Any] = {"a": a, "b": b, **stats.paired_t(diffs)}
    if n_boot:
        cells = [
            (ca.data_seed or 0, ca.seed, out[ca].label["test"], out[ca].logit["test"],
             out[cb].logit["test"])
            for ca, cb in matched
        ]
        boot = stats.hierarchical_bootstrap(cells, n_boot=n_boot, seed=seed)
        row |= {"boot_low": boot["low"], "boot_high": boot["high"], "boot_p": boot["p"]}
    return row


def sweep_family(
    measured: Measured, points: Sequence[tuple[str, str]], a: str = PRIMARY[0],
    b: str = PRIMARY[1],
) -> pl.DataFrame:
    """a − b at every (wide, deep) point, with Holm-adjusted p-values across the points."""
    rows = [
        {"wide_level": w, "deep_level": d, **compare(measured, a, b, w, d)} for w, d in points
    ]
    frame = pl.DataFrame([r for r in rows if r["n"] > 1])
    if frame.is_empty():
        return frame
    return frame.with_columns(pl.Series("p_holm", stats.holm(np.asarray(frame["p"]))))
