"""Ensembles of separately trained halves, built from their saved predictions: the mean
of probabilities, the mean of logits and a logistic stacker fitted on validation rows.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

ENSEMBLES = ("ens_mean_prob", "ens_mean_logit", "ens_stack")



def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def scores(label: np.ndarray, logit: np.ndarray) -> dict[str, float]:
    """Test AUC and log loss. AUC is undefined (NaN) when the rows hold one class only (on
    Frappe, pairs seen often in training are all clicks); both are NaN for no rows."""
    from sklearn.metrics import log_loss, roc_auc_score

    if len(label) == 0:
        return {"auc": math.nan, "logloss": math.nan}
    prob = np.clip(_sigmoid(logit), 1e-7, 1 - 1e-7)
    both = 0 < np.mean(label) < 1
    return {
        "auc": float(roc_auc_score(label, logit)) if both else math.nan,
        "logloss": float(log_loss(label, prob, labels=[0, 1])),
    }


def ensemble_logits(wide: pl.DataFrame, deep: pl.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Ensembles of two runs' saved predictions -> {ensemble: {split: logits}} and labels.

    The stacker (weights for both logits + a bias) is fitted on the validation split only and
    then applied to the test split.
    """
    from sklearn.linear_model import LogisticRegression

    both = wide.select("split", "row_id", "label", pl.col("logit").alias("z_wide")).join(
        deep.select("split", "row_id", pl.col("logit").alias("z_deep")),
        on=["split", "row_id"],
        how="inner",
        validate="1:1",
    )
    if both.height != wide.height or both.height != deep.height:
        raise ValueError("ensemble: the two runs' predictions do not cover the same rows")
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in (*ENSEMBLES, "label")}
    valid = both.filter(pl.col("split") == "valid")
    stacker = LogisticRegression(C=1e4, max_iter=1000)
    stacker.fit(valid.select("z_wide", "z_deep").to_numpy(), valid["label"].to_numpy())
    for split in ("valid", "test"):
        part = both.filter(pl.col("split") == split).sort("row_id")
        zw, zd = part["z_wide"].to_numpy(), part["z_deep"].to_numpy()
        mean_prob = np.clip((_sigmoid(zw) + _sigmoid(zd)) / 2, 1e-7, 1 - 1e-7)
        out["ens_mean_prob"][split] = np.log(mean_prob / (1 - mean_prob))
        out["ens_mean_logit"][split] = (zw + zd) / 2
        out["ens_stack"][split] = stacker.decision_function(np.stack([zw, zd], 1))
        out["label"][split] = part["label"].to_numpy()
    return out
