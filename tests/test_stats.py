"""The comparison's statistics and attribution: exact AUC, the hierarchical bootstrap, t and
Holm p-values, tower shares, logistic refits and training curves."""

from __future__ import annotations

import math
import sys

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from widedeep.experiment import attribution, curves, stats
from widedeep.experiment.stats import RankedAUC, auc, hierarchical_bootstrap, holm, paired_t

# -- AUC ------------------------------------------------------------------------------------------


def _scored(rng: np.random.Generator, n: int, digits: int | None = 1):
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(size=n) + y
    return y, (np.round(s, digits) if digits is not None else s)  # rounding: many ties


@pytest.mark.parametrize("by", ["neg", "pos"])
def test_auc_matches_sklearn_with_ties_and_weights(by):
    rng = np.random.default_rng(0)
    for n in (7, 200, 5000):
        y, s = _scored(rng, n)
        counts = rng.integers(0, 4, n)
        weights = rng.random(n) * 3
        ranked = RankedAUC(y, s, by=by)
        assert ranked() == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert ranked(weights) == pytest.approx(
            roc_auc_score(y, s, sample_weight=weights), abs=1e-12
        )
        # A count of k is the row repeated k times.
        repeated = roc_auc_score(np.repeat(y, counts), np.repeat(s, counts))
        assert ranked(counts) == pytest.approx(repeated, abs=1e-12)
        # Many weightings at once give the same as one at a time.
        batch = np.stack([counts, counts[::-1], np.ones(n, dtype=int)])
        expected = [auc(y, s, row) for row in batch]
        np.testing.assert_allclose(ranked(batch), expected, rtol=0, atol=1e-15)


def test_auc_on_another_layout_and_edge_cases():
    rng = np.random.default_rng(1)
    y, s = _scored(rng, 300)
    w = rng.integers(0, 3, 300)
    layout = RankedAUC(y, s).layout  # sorted by s: -s needs a permutation of both classes
    for by in ("neg", "pos"):
        other = RankedAUC(y, -s, layout=layout, by=by)
        assert other(w) == pytest.approx(roc_auc_score(y, -s, sample_weight=w), abs=1e-12)
    assert math.isnan(auc(np.zeros(5), np.arange(5.0)))  # one class: undefined
    assert math.isnan(auc(y, s, np.where(y == 1, 0, 1)))  # positives weigh nothing
    with pytest.raises(ValueError, match="0 or 1"):
        auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))


# -- hierarchical bootstrap -----------------------------------------------------------------------


def _binormal_cells(rng, splits: int, seeds: int, rows: int, noise_a: float, noise_b: float):
    """Rows with a latent N(0, 1) (negatives) or N(1, 1) (positives) score, drawn per split;
    each seed's model sees it through its own N(0, noise) error. Population AUC of an arm:
    Phi(1 / sqrt(2 (1 + noise^2))), whatever the seed."""
    cells = []
    for split in range(splits):
        y = (rng.random(rows) < 0.3).astype(int)
        latent = rng.normal(size=rows) + y
        for seed in range(seeds):
            a = latent + noise_a * rng.normal(size=rows)
            b = latent + noise_b * rng.normal(size=rows)
            cells.append((split, seed, y, a, b))
    return cells


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.slow
def test_bootstrap_interval_covers_the_true_difference():
    truth = _phi(1 / math.sqrt(2 * 1.25)) - _phi(1 / math.sqrt(2 * 2.0))  # noise 0.5 vs 1.0
    rng = np.random.default_rng(2)
    covered = []
    for _ in range(20):
        out = hierarchical_bootstrap(_binormal_cells(rng, 3, 3, 800, 0.5, 1.0), n_boot=200)
        assert out["low"] < out["mean"] < out["high"]
        covered.append(out["low"] <= truth <= out["high"])
        assert out["p"] < 0.05  # a difference of ~0.06 AUC with 7200 rows is plain
    assert sum(covered) >= 16  # 95% intervals: 19 expected


def test_bootstrap_interval_shrinks_with_rows_and_seeds():
    rng = np.random.default_rng(3)

    def width(splits, seeds, rows):
        out = hierarchical_bootstrap(
            _binormal_cells(rng, splits, seeds, rows, 0.5, 1.0), n_boot=300
        )
        return out["high"] - out["low"]

    assert width(1, 3, 8000) < 0.6 * width(1, 3, 1000)
    assert width(2, 12, 1000) < 0.7 * width(2, 2, 1000)


def test_bootstrap_resamples_splits_and_seeds():
    """Differences that vary between splits (or seeds) far more than rows can explain: the
    interval must span them, which it only does if that level is resampled."""
    rng = np.random.default_rng(13)

    def cells(noise_b, split_of):
        out = []
        for i, nb in enumerate(noise_b):
            y = (rng.random(4000) < 0.3).astype(int)
            latent = rng.normal(size=4000) + y
            a, b = latent + 0.7 * rng.normal(size=4000), latent + nb * rng.normal(size=4000)
            out.append((split_of(i), i, y, a, b))
        return out

    for split_of in (lambda i: i, lambda i: 0):  # two splits of one seed; one split, two seeds
        two = cells([0.2, 1.5], split_of)
        d = sorted(auc(y, a) - auc(y, b) for _, _, y, a, b in two)
        out = hierarchical_bootstrap(two, n_boot=400)
        assert out["low"] < d[0] + 0.25 * (d[1] - d[0])
        assert out["high"] > d[1] - 0.25 * (d[1] - d[0])


def test_bootstrap_of_identical_arms_is_exactly_zero():
    cells = [
        (s, k, y, a, a.copy())
        for s, k, y, a, _ in _binormal_cells(np.random.default_rng(4), 2, 3, 500, 0.5, 1.0)
    ]
    for rows in ("multinomial", "poisson"):
        out = hierarchical_bootstrap(cells, n_boot=100, rows=rows)
        assert (out["mean"], out["low"], out["high"], out["se"], out["p"]) == (0, 0, 0, 0, 1)


def test_bootstrap_is_shift_invariant_and_seeded():
    cells = _binormal_cells(np.random.default_rng(5), 2, 2, 600, 0.5, 1.0)
    shifted = [(s, k, y, a, b + 3.0) for s, k, y, a, b in cells]
    first = hierarchical_bootstrap(cells, n_boot=150, seed=7)
    assert hierarchical_bootstrap(shifted, n_boot=150, seed=7) == first  # AUC is rank-only
    assert hierarchical_bootstrap(cells, n_boot=150, seed=7) == first
    assert hierarchical_bootstrap(cells, n_boot=150, seed=8) != first
    expected = np.mean([auc(y, a) - auc(y, b) for _, _, y, a, b in cells])
    assert first["mean"] == pytest.approx(expected, abs=1e-15)


@pytest.mark.slow
def test_bootstrap_rows_only_matches_a_naive_resampling():
    """One split, one seed: a plain row bootstrap, against resampled arrays and sklearn."""
    rng = np.random.default_rng(6)
    cells = _binormal_cells(rng, 1, 1, 1500, 0.5, 1.0)
    _, _, y, a, b = cells[0]
    naive = []
    for _ in range(300):
        i = rng.integers(0, len(y), len(y))
        naive.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    for rows in ("multinomial", "poisson"):
        out = hierarchical_bootstrap(cells, n_boot=600, rows=rows)
        assert out["se"] == pytest.approx(np.std(naive, ddof=1), rel=0.2)


def test_bootstrap_logloss_and_bad_input():
    cells = _binormal_cells(np.random.default_rng(7), 2, 2, 400, 0.5, 1.0)
    out = hierarchical_bootstrap(cells, metric="logloss", n_boot=100)

    def logloss(y, z):
        return np.mean(np.logaddexp(0, z) - y * z)

    expected = np.mean([logloss(y, a) - logloss(y, b) for _, _, y, a, b in cells])
    assert out["mean"] == pytest.approx(expected, abs=1e-12)
    assert out["low"] < out["mean"] < out["high"]
    with pytest.raises(ValueError, match="twice"):
        hierarchical_bootstrap([cells[0], cells[0]])
    one_class = [(0, 0, np.zeros(4, int), np.arange(4.0), np.arange(4.0))]
    with pytest.raises(ValueError, match="undefined"):
        hierarchical_bootstrap(one_class)


# -- t and Holm -----------------------------------------------------------------------------------


def _hand_t_case(out: dict) -> None:
    # [1, 2, 3]: mean 2, std 1, se 1/sqrt(3), t = 2 sqrt(3) on 2 df. With 2 df the t tail is
    # closed-form, P(|T| > t) = 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14); t_0.975,2 = 4.30265.
    assert out["t"] == pytest.approx(2 * math.sqrt(3), abs=1e-12)
    assert out["df"] == 2
    assert out["p"] == pytest.approx(1 - math.sqrt(6 / 7), abs=1e-12)
    assert out["ci"] == pytest.approx(4.302652729911275 / math.sqrt(3), abs=1e-9)


def test_paired_t_by_hand_and_against_scipy(monkeypatch):
    _hand_t_case(paired_t([1, 2, 3]))
    _hand_t_case(paired_t([1.5, 2.5, 3.5], [0.5, 0.5, 0.5]))
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(8).normal(0.3, 1, 7)
    ref = scipy_stats.ttest_1samp(x, 0)
    assert paired_t(x)["p"] == pytest.approx(ref.pvalue, abs=1e-12)
    # Without scipy: the incomplete-beta fallback gives the same.
    with_scipy = [stats.t_pvalue(t, df) for t in (0.1, 1.0, 2.5, 8.0, 40.0) for df in (1, 2, 5, 30)]
    q = stats._t_quantile(0.975, 4)
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError):
        import scipy  # noqa: F401
    _hand_t_case(paired_t([1, 2, 3]))
    without = [stats.t_pvalue(t, df) for t in (0.1, 1.0, 2.5, 8.0, 40.0) for df in (1, 2, 5, 30)]
    np.testing.assert_allclose(without, with_scipy, rtol=1e-10, atol=1e-15)
    assert stats._t_quantile(0.975, 4) == pytest.approx(q, abs=1e-10)


def test_paired_t_degenerate():
    assert paired_t([0.25, 0.25, 0.25])["p"] == 0.0  # exact in binary: std 0, t = inf
    assert paired_t([0.0, 0.0])["p"] == 1.0
    assert math.isnan(paired_t([0.1])["p"])


def test_holm_by_hand_monotone_and_capped():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(
        stats.holm_reject([0.01, 0.04, 0.03, 0.005], alpha=0.05), [True, False, False, True]
    )
    p = np.random.default_rng(9).random(12) ** 3
    adjusted = holm(p)
    assert np.all(np.diff(adjusted[np.argsort(p)]) >= 0)  # monotone in p
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    np.testing.assert_array_equal(holm([0.5, 0.6]), [1.0, 1.0])
    with pytest.raises(ValueError):
        holm([0.1, math.nan])


# -- attribution ----------------------------------------------------------------------------------


def test_variance_shares():
    rng = np.random.default_rng(10)
    zw, zd = rng.normal(size=1000), rng.normal(size=1000) * 2 + 0.3 * rng.normal(size=1000)
    shares = attribution.variance_shares(zw, zd)
    assert shares["wide"] + shares["deep"] == pytest.approx(1, abs=1e-15)
    x = rng.normal(size=100)
    assert attribution.variance_shares(x, 2 * x) == pytest.approx({"wide": 1 / 3, "deep": 2 / 3})
    assert attribution.variance_shares(np.full(100, 0.7), x) == pytest.approx(
        {"wide": 0, "deep": 1}, abs=1e-15
    )
    assert attribution.variance_shares(x, np.full(100, -2.0)) == pytest.approx(
        {"wide": 1, "deep": 0}, abs=1e-15
    )
    against = attribution.variance_shares(x, -0.5 * x)  # the deep tower cancels half of wide
    assert against["deep"] < 0 < 1 < against["wide"]
    assert math.isnan(attribution.variance_shares(np.ones(5), np.ones(5))["wide"])


def test_auc_drop():
    rng = np.random.default_rng(11)
    y = (rng.random(2000) < 0.3).astype(int)
    zw, zd = y + rng.normal(size=2000), 0.5 * y + rng.normal(size=2000)
    drop = attribution.auc_drop(y, zw, zd)
    assert drop["auc"] == pytest.approx(roc_auc_score(y, zw + zd), abs=1e-12)
    assert drop["wide"] > drop["deep"] > 0
    constant = attribution.auc_drop(y, np.full(2000, 0.1), zd)
    assert constant["wide"] == pytest.approx(0, abs=1e-12)


def _sklearn_unpenalised(x, y):
    # C=inf is penalty=None (deprecated in sklearn 1.8 under that name).
    return LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(
        x, y
    )


def test_platt_and_tower_refit_match_sklearn():
    rng = np.random.default_rng(12)
    n = 4000
    zw, zd = rng.normal(size=n), 2 * rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.7 * zw + 0.3 * zd - 0.5)))).astype(int)
    z = zw + zd
    calibrated, fit = attribution.platt_scale(z[:2000], y[:2000], z[2000:])
    ref = _sklearn_unpenalised(z[:2000, None], y[:2000])
    assert fit.converged
    assert fit.coef[0] == pytest.approx(ref.coef_[0, 0], abs=1e-6)
    assert fit.intercept == pytest.approx(ref.intercept_[0], abs=1e-6)
    np.testing.assert_allclose(calibrated, ref.decision_function(z[2000:, None]), atol=1e-5)
    assert auc(y[2000:], calibrated) == pytest.approx(auc(y[2000:], z[2000:]), abs=1e-15)
    refit = attribution.refit_towers(zw, zd, y)
    ref = _sklearn_unpenalised(np.stack([zw, zd], 1), y)
    np.testing.assert_allclose(refit.coef, ref.coef_[0], atol=1e-6)
    assert refit.intercept == pytest.approx(ref.intercept_[0], abs=1e-6)


def test_logistic_fit_on_separable_data_stays_finite():
    x = np.r_[np.linspace(-3, -1, 50), np.linspace(1, 3, 50)]
    y = np.r_[np.zeros(50), np.ones(50)]
    fit = attribution.fit_logistic(x, y)
    assert fit.converged and np.isfinite(fit.coef).all() and fit.coef[0] > 1
    assert np.all((fit.logit(x) > 0) == (y == 1))
    with pytest.raises(ValueError, match="one class"):
        attribution.fit_logistic(x, np.ones(100))


# -- curves ---------------------------------------------------------------------------------------

# The layout Lightning's CSVLogger wrote for a 2-epoch run (trainer.log_every_n_steps=1): one row
# per log call, then the post-fit re-validation and test of the best checkpoint at epoch 2.
METRICS_CSV = """\
epoch,step,test/auc,test/logloss,train/loss,val/auc,val/auc_minus_logloss,val/logloss,wide/nonzero,wide/nonzero_share
0,0,,,0.69,,,,,
0,1,,,0.67,,,,,
0,2,,,0.65,,,,,
0,2,,,,0.70,-0.1,0.80,,
0,2,,,,,,,1930.0,0.99
1,3,,,0.62,,,,,
1,4,,,0.60,,,,,
1,5,,,0.58,,,,,
1,5,,,,0.72,-0.05,0.77,,
1,5,,,,,,,1900.0,0.98
2,6,,,,0.72,-0.05,0.77,,
2,6,0.71,0.78,,,,,,
"""


def test_read_curve_and_plot(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text(METRICS_CSV)
    curve = curves.read_curve(run)
    assert curve["epoch"].to_list() == [0, 1]  # not the post-fit evaluation at epoch 2
    assert curve["val_auc"].to_list() == [0.70, 0.72]
    assert curve["val_logloss"].to_list() == [0.80, 0.77]
    assert curve["train_loss"].to_list() == pytest.approx([0.67, 0.60])  # epoch means
    assert curve["wide_nonzero"].to_list() == [1930.0, 1900.0]
    assert "test_auc" not in curve.columns
    both = curves.read_curves({run: "joint", str(run): "wide"})
    assert both.columns[:3] == ["run", "arm", "epoch"] and both.height == 4
    out = tmp_path / "plots" / "curves.png"
    curves.plot_curves(both, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary left


def test_read_curve_while_training_and_missing(tmp_path):
    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "metrics.csv").write_text("".join(METRICS_CSV.splitlines(True)[:6]))
    assert curves.read_curve(run)["epoch"].to_list() == [0]
    with pytest.raises(
        FileNotFoundError, match=r"elsewhere.logs.metrics\.csv.*trainer\.logger=csv"
    ):
        curves.read_curve(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="missing"):
        curves.plot_curves(pl.DataFrame({"run": ["r"], "arm": ["a"]}), tmp_path / "x.png")
