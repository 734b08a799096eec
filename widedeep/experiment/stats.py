"""Statistics of the comparison: means with t-intervals, the smallest configuration within a
tolerance (chosen on split B), exact AUC under reweighting, the hierarchical bootstrap, paired
t-tests and Holm."""

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


def smallest_within(results: pl.DataFrame, arm: str, tolerance: float = 0.001) -> dict[str, Any]:
    """The configuration with the fewest non-zero parameters whose mean split-B AUC is within
    ``tolerance`` of the arm's best configuration on split B: chosen on B, never on test; its
    test AUC is reported beside the test AUC of the configuration best on B."""
    per = (
        results.filter(pl.col("arm") == arm)
        .group_by("wide_level", "deep_level")
        .agg(
            pl.col("valid_b_auc").mean(),
            pl.col("test_auc").mean(),
            pl.col("params").mean(),
            pl.col("nonzero_params").mean(),
        )
        # Named tie-breaks: group_by's order is not stable across runs.
        .sort("nonzero_params", "params", "wide_level", "deep_level")
    )
    best = per.sort(
        ["valid_b_auc", "wide_level", "deep_level"], descending=[True, False, False]
    ).row(0, named=True)
    pick = per.filter(pl.col("valid_b_auc") >= best["valid_b_auc"] - tolerance).row(0, named=True)
    return {**pick, "best_auc": best["test_auc"], "best_valid_b_auc": best["valid_b_auc"]}


# -- exact AUC, fast under reweighting ------------------------------------------------------------


class RankedAUC:
    """Exact AUC of one score vector under many row weightings, sorting once.

    AUC = P(score_pos > score_neg) + P(tie) / 2 over weighted (positive, negative) pairs: the
    Mann-Whitney statistic with ties as average ranks, which is what sklearn's roc_auc_score
    computes. Rows are held in ``layout`` order (negatives first, then positives). One class
    (``by``: "neg" or "pos") is sorted once and each row of the other class is placed among it
    once; a weighting then costs one cumulative sum and one gather. The bootstrap puts the
    negatives in arm a's order and the positives in arm b's, so neither arm needs a
    permutation. Integer weights (bootstrap counts) are summed in integers: the result is exact
    and identical scores give bit-identical AUCs. NaN when a class has zero weight.
    """

    def __init__(
        self,
        label: np.ndarray,
        score: np.ndarray,
        layout: np.ndarray | None = None,
        by: str = "neg",
    ) -> None:
        y = _labels(label)
        score = np.asarray(score, dtype=float)
        if score.shape != y.shape:
            raise ValueError(f"AUC: {len(y)} labels but scores of shape {score.shape}")
        if not np.isfinite(score).all():
            raise ValueError("AUC: scores must be finite")
        self.n_neg = n_neg = int((~y).sum())
        if layout is None:  # negatives, then positives, the class ``by`` sorted by score
            neg, pos = np.flatnonzero(~y), np.flatnonzero(y)
            side = neg if by == "neg" else pos
            side[:] = side[np.argsort(score[side], kind="stable")]
            layout = np.concatenate([neg, pos])
        if not (np.all(~y[layout[:n_neg]]) and np.all(y[layout[n_neg:]])):
            raise ValueError("AUC: the layout must hold the negatives first, then the positives")
        self.layout, self.by = layout, by
        cut = {
            "neg": (slice(0, n_neg), slice(n_neg, None)),
            "pos": (slice(n_neg, None), slice(0, n_neg)),
        }[by]
        self.side, self.other = cut
        ranked, placed = score[layout[self.side]], score[layout[self.other]]
        order = np.argsort(ranked, kind="stable")
        # None: the layout already holds this class in this score's order (no gather needed).
        self.perm = None if np.array_equal(order, np.arange(len(order))) else order
        ranked = ranked[order]
        self.lo = np.searchsorted(ranked, placed, side="left")  # side rows strictly below
        hi = np.searchsorted(ranked, placed, side="right")  # ... or tied with it
        self.tied = np.flatnonzero(hi != self.lo)
        self.hi_tied = hi[self.tied]

    def __call__(self, weight: np.ndarray | None = None) -> np.ndarray | float:
        """AUC under ``weight`` ((n,) or (m, n) in row order; None: all 1) -> float or (m,)."""
        n = len(self.layout)
        w = np.ones(n, dtype=np.int64) if weight is None else np.asarray(weight)
        if w.shape[-1] != n or w.ndim > 2:
            raise ValueError(f"AUC: weights of shape {w.shape} for {n} rows")
        if np.any(w < 0):
            raise ValueError("AUC: weights must be >= 0")
        out = self.in_layout(np.take(np.atleast_2d(w), self.layout, axis=1))
        return float(out[0]) if w.ndim == 1 else out

    def in_layout(self, w: np.ndarray) -> np.ndarray:
        """AUC per row of ``w`` (m, n), whose columns are already in ``self.layout`` order."""
        side, other = w[:, self.side], w[:, self.other]
        # Counts whose every partial product fits int32 stay int32 (twice as fast); else int64.
        if w.dtype.kind == "f":
            acc = total = np.float64
        else:
            small = w.shape[1] * max(1, int(w.max(initial=0))) ** 2 < 2**31
            acc, total = (np.int32 if small else np.int64), np.int64
        if self.perm is not None:  # not side[:, perm]: that is Fortran-ordered, a slow cumsum
            side = np.take(np.ascontiguousarray(side), self.perm, axis=1, mode="clip")
        # np.empty, not zeros: calloc of a recycled block is a 16 MB memset per call.
        below = np.empty((w.shape[0], side.shape[1] + 1), dtype=acc)  # weight ranked below k
        below[:, 0] = 0
        np.cumsum(side, axis=1, dtype=acc, out=below[:, 1:])
        # Twice the weighted count of (side below other) pairs, ties counting once: integers.
        got = 2 * (other * np.take(below, self.lo, 1, mode="clip")).sum(axis=1, dtype=total)
        if len(self.tied):
            lo, hi = self.lo[self.tied], self.hi_tied
            tied = np.take(below, hi, 1, mode="clip") - np.take(below, lo, 1, mode="clip")
            got += (np.take(other, self.tied, 1) * tied).sum(axis=1, dtype=total)
        pairs = other.sum(axis=1, dtype=total) * below[:, -1].astype(total)
        if self.by == "pos":  # counted (positive below negative) pairs: take the complement
            got = 2 * pairs - got
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, got / (2.0 * pairs), np.nan)


def auc(label: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Exact ROC AUC (ties as average ranks; sklearn's roc_auc_score with sample_weight).

    ``weight``: per-row weights or repeat counts (count k = the row repeated k times). NaN when
    the rows hold one class only. For many weightings of the same scores use ``RankedAUC``."""
    return RankedAUC(label, score)(weight)


def _labels(label: np.ndarray) -> np.ndarray:
    y = np.asarray(label)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y.astype(bool)


# -- hierarchical paired bootstrap ----------------------------------------------------------------

Cell = tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray]  # split_id, seed, label, a, b
_POISSON_CDF = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(12)]).astype(np.float32)


def _row_counts(rng: np.random.Generator, m: int, n: int, rows: str) -> np.ndarray:
    """(m, n) bootstrap counts of n rows: multinomial (n draws with replacement) or Poisson(1)."""
    if rows == "poisson":
        # Inverse CDF on float32 uniforms: 4x cheaper than rng.poisson; counts above 11 (p ~1e-9)
        # are cut to 11.
        u = rng.random((m, n), dtype=np.float32)
        out = (u >= _POISSON_CDF[0]).view(np.uint8)
        for edge in _POISSON_CDF[1:]:
            out += u >= edge
        return out
    idx = rng.integers(0, n, size=(m, n), dtype=np.int32 if n < 2**31 else np.int64)
    out = np.empty((m, n), dtype=np.int32)
    for i in range(m):  # one bincount per draw stays in cache; a flat one over m * n does not
        out[i] = np.bincount(idx[i], minlength=n)
    return out


def _cell_metric(metric: str, label: np.ndarray, a: np.ndarray, b: np.ndarray):
    """(layout, f) where f(counts in layout order) -> metric(a) - metric(b) per row of counts."""
    if metric == "auc":
        # Negatives in a's order, positives in b's: neither arm gathers (see RankedAUC).
        y = _labels(label)
        neg, pos = np.flatnonzero(~y), np.flatnonzero(y)
        layout = np.concatenate(
            [neg[np.argsort(a[neg], kind="stable")], pos[np.argsort(b[pos], kind="stable")]]
        )
        auc_a = RankedAUC(y, a, layout, by="neg")
        auc_b = RankedAUC(y, b, layout, by="pos")
        return layout, lambda w: auc_a.in_layout(w) - auc_b.in_layout(w)
    if metric == "logloss":  # scores are logits; per-row losses, so the difference is linear
        y = _labels(label).astype(float)
        loss = np.logaddexp(0.0, a) - y * a - (np.logaddexp(0.0, b) - y * b)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.arange(len(y)), lambda w: (w @ loss) / w.sum(axis=1)
    raise ValueError(f"metric={metric!r}: expected 'auc' or 'logloss'")


def hierarchical_bootstrap(
    cells: Sequence[Cell],
    metric: str = "auc",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    rows: str = "multinomial",
) -> dict[str, float]:
    """Paired bootstrap of metric(a) - metric(b) over data splits, model seeds and test rows.

    ``cells``: one ``(split_id, seed, label, score_a, score_b)`` per trained (split, seed), the
    arrays being that run's test rows (row i of ``score_a`` and ``score_b`` is the same example;
    scores are logits for ``metric="logloss"``). The estimate is the mean over splits of the
    mean over that split's seeds of the cell's difference. One replicate:

    1. draw S splits with replacement from the S splits;
    2. for each drawn split (a split drawn twice counts twice), draw K seeds with replacement
       from its K seeds;
    3. for each drawn (split, seed), draw the cell's n test rows with replacement
       (``rows="multinomial"``; ``"poisson"``: independent Poisson(1) counts, faster) - a new
       draw every time the cell is drawn, the same rows for both arms (paired);
    4. the replicate is the mean over drawn splits of the mean over its drawn seeds of the
       cell's metric difference on its drawn rows.

    With one split this is seeds x rows. Rows are drawn as counts (never resampled arrays):
    the AUC of a cell is computed from its ranks, sorted once, under each count vector.
    Returns ``mean`` (the estimate on the data, not a bootstrap mean), ``low``/``high`` (the
    percentile interval at ``level``), ``p`` (two-sided: min(1, 2 (1 + k) / (1 + n)) with k
    the smaller of #{replicates <= 0} and #{replicates >= 0}: about the smallest alpha at which
    the percentile interval at 1 - alpha excludes zero; 1 when every replicate is 0), ``se``
    (the replicates' std), ``n_boot`` (replicates with a defined metric: a replicate is dropped
    when a drawn cell's rows lost a class), ``splits`` and ``cells``. Reproducible given ``seed``.
    """
    if not cells:
        raise ValueError("hierarchical_bootstrap: no cells")
    if not (0 < level < 1 and n_boot >= 1):
        raise ValueError(f"hierarchical_bootstrap: level={level} (in (0, 1)), n_boot={n_boot}")
    if rows not in ("multinomial", "poisson"):
        raise ValueError(f"rows={rows!r}: expected 'multinomial' or 'poisson'")
    splits: dict[Any, list[int]] = {}
    for i, (split, run_seed, *_) in enumerate(cells):
        if any(cells[j][1] == run_seed for j in splits.get(split, [])):
            raise ValueError(f"hierarchical_bootstrap: cell (split={split}, seed={run_seed}) twice")
        splits.setdefault(split, []).append(i)
    rng = np.random.default_rng(seed)
    n_split = len(splits)
    split_draws = rng.multinomial(n_split, np.full(n_split, 1 / n_split), size=n_boot)
    # Seeds of a split drawn m times: m * K draws over its K seeds; all share the weight
    # 1 / (S * K), so which split-draw a seed-draw belongs to does not matter.
    draws = np.zeros((n_boot, len(cells)), dtype=np.int64)
    for s, members in enumerate(splits.values()):
        k = len(members)
        draws[:, members] = rng.multinomial(split_draws[:, s] * k, np.full(k, 1 / k))
    replicate = np.zeros(n_boot)
    observed = 0.0
    for members in splits.values():
        for i in members:
            _, run_seed, label, a, b = cells[i]
            layout, diff = _cell_metric(metric, label, np.asarray(a), np.asarray(b))
            n = len(layout)
            here = float(diff(np.ones((1, n), dtype=np.int32))[0])
            if not math.isfinite(here):
                raise ValueError(f"hierarchical_bootstrap: {metric} undefined in {cells[i][:2]}")
            weight = 1.0 / (n_split * len(members))
            observed += weight * here
            owner = np.repeat(np.arange(n_boot), draws[:, i])  # the replicate of each draw
            chunk = max(1, 4_000_000 // n)  # ~16 MB of counts at a time
            for start in range(0, len(owner), chunk):
                part = owner[start : start + chunk]
                d = diff(_row_counts(rng, len(part), n, rows))
                replicate += weight * np.bincount(part, weights=d, minlength=n_boot)
    ok = replicate[np.isfinite(replicate)]
    low, high = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2]) if len(ok) else (np.nan,) * 2
    far = min(int((ok <= 0).sum()), int((ok >= 0).sum()))
    return {
        "mean": observed,
        "low": float(low),
        "high": float(high),
        "p": min(1.0, 2 * (1 + far) / (1 + len(ok))),
        "se": float(ok.std(ddof=1)) if len(ok) > 1 else math.nan,
        "n_boot": len(ok),
        "splits": n_split,
        "cells": len(cells),
    }


# -- paired t-test over seeds, Holm -------------------------------------------------------------


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if math.isnan(t) or not df > 0:
        return math.nan
    try:
        from scipy import stats
    except ImportError:  # P(|T| >= t) = I_{df / (df + t^2)}(df / 2, 1 / 2)
        return 0.0 if math.isinf(t) else _betainc(df / 2, 0.5, df / (df + t * t))
    return float(2 * stats.t.sf(abs(t), df))


def _t_quantile(q: float, df: float) -> float:
    """The t quantile at q > 0.5: scipy's, else bisection on the p-value (monotone in t)."""
    try:
        from scipy import stats
    except ImportError:
        low, high = 0.0, 1.0
        while t_pvalue(high, df) > 2 * (1 - q):
            low, high = high, 2 * high
        for _ in range(200):
            mid = (low + high) / 2
            low, high = (mid, high) if t_pvalue(mid, df) > 2 * (1 - q) else (low, mid)
        return (low + high) / 2
    return float(stats.t.ppf(q, df))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b): Lentz's continued fraction (Numerical Recipes
    6.4), on the side of x where it converges fast."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def paired_t(
    a: Sequence[float], b: Sequence[float] | None = None, level: float = 0.95
) -> dict[str, float]:
    """Paired t-test of mean(a - b) = 0 over seeds (``b`` None: of mean(a) = 0).

    Returns mean, ci (the t-interval's half-width at ``level``), std, t, df, p (two-sided) and
    n. All differences equal: t = +-inf and p = 0, or t = 0 and p = 1 when they are all 0."""
    x = np.asarray(a, dtype=float) - (0.0 if b is None else np.asarray(b, dtype=float))
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        nan = math.nan
        return {"mean": mean, "ci": nan, "std": nan, "t": nan, "df": nan, "p": nan, "n": n}
    std = float(x.std(ddof=1))
    se = std / math.sqrt(n)
    t = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    df = n - 1
    p = t_pvalue(t, df) if se > 0 else (1.0 if mean == 0 else 0.0)
    ci = _t_quantile((1 + level) / 2, df) * se
    return {"mean": mean, "ci": ci, "std": std, "t": t, "df": df, "p": p, "n": n}


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    Sorted ascending, p_(i) is multiplied by (m - i + 1), made non-decreasing (a hypothesis is
    only rejected after every smaller p-value was) and capped at 1. Rejecting where the
    adjusted value is <= alpha controls the family-wise error rate at alpha."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"holm: p-values must be a list of numbers in [0, 1], got {pvalues}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


def holm_reject(pvalues: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Which hypotheses Holm's procedure rejects at family-wise error rate ``alpha``."""
    return holm(pvalues) <= alpha
