"""The joint-vs-ensemble harness: ensembles from saved predictions, tables and plots."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from widedeep.experiment.ensembles import ensemble_logits
from widedeep.experiment.plan import Run, plan
from widedeep.experiment.stats import mean_ci


def _preds(seed: int, n: int = 400) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 2 * n)
    logit = rng.normal(size=2 * n) + 1.5 * (label - 0.5)
    return pl.DataFrame(
        {
            "row_id": np.tile(np.arange(n), 2),
            "label": label,
            "logit": logit,
            "split": ["valid"] * n + ["test"] * n,
        }
    )


def test_stacker_is_fitted_on_validation_rows_only():
    wide, deep = _preds(0), _preds(1).with_columns(pl.col("label").alias("label"))
    deep = deep.with_columns(wide["label"])  # both arms scored the same rows
    base = ensemble_logits(wide, deep)
    # Scramble the test predictions: the stacker, fitted on valid, must not change.
    test = pl.col("split") == "test"
    wide2 = wide.with_columns(pl.when(test).then(pl.col("logit") * -3).otherwise(pl.col("logit")))
    changed = ensemble_logits(wide2, deep)
    np.testing.assert_array_equal(base["ens_stack"]["valid"], changed["ens_stack"]["valid"])
    # ... and applied to test rows it is the same linear map of the (new) test logits.
    w_valid = wide.filter(~test).sort("row_id")["logit"].to_numpy()
    d_valid = deep.filter(~test).sort("row_id")["logit"].to_numpy()
    coef = np.linalg.lstsq(
        np.stack([w_valid, d_valid, np.ones_like(w_valid)], 1),
        base["ens_stack"]["valid"],
        rcond=None,
    )[0]
    w_test = wide2.filter(test).sort("row_id")["logit"].to_numpy()
    d_test = deep.filter(test).sort("row_id")["logit"].to_numpy()
    np.testing.assert_allclose(
        changed["ens_stack"]["test"], coef[0] * w_test + coef[1] * d_test + coef[2], atol=1e-8
    )
    np.testing.assert_allclose(
        base["ens_mean_logit"]["test"],
        (wide.filter(test)["logit"] + deep.filter(test)["logit"]).to_numpy() / 2,
    )


def test_mismatched_predictions_are_refused():
    with pytest.raises(ValueError, match="same rows"):
        ensemble_logits(_preds(0), _preds(1).head(500))


def test_plan_and_confidence_interval():
    bench = {
        "seeds": [0, 1],
        "main": {"wide": "a", "deep": "x"},
        "grid": "axes",
        "sweep": {"wide": [{"name": "a"}, {"name": "b"}], "deep": [{"name": "x"}, {"name": "y"}]},
    }
    runs = plan(bench)
    joint = {(r.wide_level, r.deep_level) for r in runs if r.kind == "wide_deep"}
    assert joint == {("a", "x"), ("a", "y"), ("b", "x")}  # axes through the main levels
    assert Run(0, "wide", "a", "-") in runs and len(runs) == 2 * (2 + 2 + 3)
    mean, half, std = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0 and half == pytest.approx(4.303 / 3**0.5, rel=1e-3)


@pytest.mark.slow
def test_bench_end_to_end_on_tiny_synthetic_data(tmp_path):
    from hydra import compose, initialize_config_module

    from widedeep.experiment.harness import bench

    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(
            config_name="bench",
            overrides=[
                "data.generator.n_rows=6000",
                "trainer.max_epochs=1",
                "bench.seeds=[0,1]",
                "bench.sweep.deep=[{name: small, overrides: {model.deep.hidden: [16]}}]",
                "bench.main.deep=small",
                "bench.sweep.wide=[{name: l1_1, overrides: {optim.wide.l1: 1.0}},"
                "{name: l1_0, overrides: {optim.wide.l1: 0.0}}]",
                f"bench.runs_dir={tmp_path}/runs",
                f"bench.out_dir={tmp_path}/out",
                "output_dir=unused",
            ],
        )
    out = bench(cfg)
    results = pl.read_parquet(out / "results.parquet")
    arms = set(results["arm"])
    assert {
        "wide",
        "deep",
        "joint",
        "ens_mean_prob",
        "ens_mean_logit",
        "ens_stack",
        "ens_best",
    } <= arms
    assert results.filter(pl.col("arm") == "joint").height == 2 * 2
    assert results["test_auc"].is_between(0.0, 1.0).all()  # tiny data: a weak arm may sit at 0.5
    assert results.filter(pl.col("arm") == "joint")["test_auc"].min() > 0.6
    for name in (
        "summary.md",
        "results.csv",
        "slices.csv",
        "exceptions.csv",
        "auc_vs_params.png",
        "slices.png",
    ):
        assert (out / name).exists(), name
    text = (out / "summary.md").read_text()
    assert "joint − ens_best" in text and "## Frequency slices" in text
    # Finished runs are reused: a second call trains nothing new.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")}
    bench(cfg)
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("metrics.json")}


def test_single_class_slice_has_no_auc_but_a_log_loss():
    from widedeep.experiment.ensembles import scores

    logit = np.array([2.0, 0.0, -1.0])
    clicks = scores(np.ones(3), logit)
    assert np.isnan(clicks["auc"])
    expected = -np.mean(np.log(1 / (1 + np.exp(-logit))))
    assert clicks["logloss"] == pytest.approx(expected)
    mixed = scores(np.array([1.0, 0.0, 0.0]), logit)
    assert mixed["auc"] == 1.0
    assert np.isnan(scores(np.array([]), np.array([]))["logloss"])
