"""Learning happens, and the joint model does what Wide & Deep claims on planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from widedeep.cli.config import compose_config
from widedeep.training.run import train


@pytest.mark.slow
def test_joint_model_beats_each_tower_alone(tmp_path):
    """The synthetic log plants low-rank user-item affinities (deep generalises them) and
    (user, item) exceptions (wide crosses memorise them); only the joint model has both.

    Margin: over generator seeds 0-3 with these settings the joint model beat the better single
    tower by 0.011 to 0.018 test AUC (plain-loop runs while writing this test); 0.005 leaves room
    for run-to-run noise while still failing if either tower stops contributing.
    """
    common = ["experiment=demo", "trainer.progress_bar=false", "trainer.logger=none"]
    auc = {}
    for kind in ("wide", "deep", "wide_deep"):
        out = tmp_path / kind
        auc[kind] = train(compose_config([*common, f"model={kind}"], str(out)))["test"]["auc"]
    assert auc["wide_deep"] > max(auc["wide"], auc["deep"]) + 0.005, auc
    # Well above chance for each arm: all of them learned something real.
    assert min(auc.values()) > 0.7, auc


@pytest.mark.slow
def test_predictions_track_the_true_logit(tmp_path):
    import polars as pl

    from widedeep.data.pipeline import load_data

    cfg = compose_config(
        [
            "experiment=demo",
            "trainer.progress_bar=false",
            "trainer.logger=none",
            "trainer.max_epochs=2",
            "data.generator.n_rows=100000",
        ],
        str(tmp_path),
    )
    train(cfg)
    preds = pl.read_parquet(tmp_path / "predictions.parquet").filter(pl.col("split") == "test")
    truth = load_data(dict(cfg.data)).extras["test"]["true_logit"].to_numpy()
    corr = np.corrcoef(preds.sort("row_id")["logit"].to_numpy(), truth)[0, 1]
    # An untrained model correlates ~0 with the truth. Observed (2026-12-02, deterministic on
    # CPU): 0.649; the bound sits 0.02 below (the wide tower without its crosses: 0.582).
    assert corr > 0.63, corr
