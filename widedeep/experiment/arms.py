"""Arms from their members' saved predictions: single models, the joint model's refit, and
ensembles (mean of probabilities, mean of logits, a logistic stacker).

Every post-hoc choice is made on validation split B (``valid_b``), which no member saw during
training (early stopping and tuning use split A, ``valid``): the stacker's and the refit's
weights, and which combiner an ``ens_best``-type arm uses. Test rows inform nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from widedeep.experiment.attribution import fit_logistic, refit_towers
from widedeep.experiment.stats import auc

ENSEMBLES = ("ens_mean_prob", "ens_mean_logit", "ens_stack")
FIT = "valid_b"  # the split every post-hoc weight and choice is fitted on
SPLITS = (FIT, "test")
BEST_OF = {  # arm -> the combiners it chooses among on split B
    "ens_best": ENSEMBLES,
    "ens_best_equal_total": ENSEMBLES,
    "ens_deep_deep": ENSEMBLES,
    "ens_joint_joint": ENSEMBLES,
}


@dataclass
class ArmOutput:
    """An arm's logits on split B and on test, with the choice it made on B."""

    label: dict[str, np.ndarray]  # split -> (R,)
    logit: dict[str, np.ndarray]  # split -> (R,)
    combiner: str | None = None  # the ensemble rule chosen, for best-of arms
    weights: list[float] | None = None  # stacker / refit weights (last: the intercept)

    def scores(self, split: str = "test") -> dict[str, float]:
        return scores(self.label[split], self.logit[split])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def scores(label: np.ndarray, logit: np.ndarray) -> dict[str, float]:
    """AUC and log loss. AUC is undefined (NaN) when the rows hold one class only (on Frappe,
    pairs seen often in training are all clicks); both are NaN for no rows."""
    from sklearn.metrics import log_loss

    if len(label) == 0:
        return {"auc": math.nan, "logloss": math.nan}
    prob = np.clip(_sigmoid(logit), 1e-7, 1 - 1e-7)
    both = 0 < np.mean(label) < 1
    return {
        "auc": auc(label, logit) if both else math.nan,
        "logloss": float(log_loss(label, prob, labels=[0, 1])),
    }


def aligned(frames: Sequence[pl.DataFrame], column: str = "logit") -> dict[str, pl.DataFrame]:
    """split -> rows sorted by row_id with label and ``column`` of every member (z0, z1, ...)."""
    keys = ["split", "row_id"]
    both = frames[0].select(*keys, "label", pl.col(column).alias("z0"))
    for i, frame in enumerate(frames[1:], 1):
        part = frame.select(*keys, pl.col("label").alias("label_m"), pl.col(column).alias(f"z{i}"))
        both = both.join(part, on=keys, how="inner", validate="1:1")
        if both.height != frames[0].height or both.height != frame.height:
            raise ValueError("arm: the members' predictions do not cover the same rows")
        if not (both["label"] == both["label_m"]).all():
            raise ValueError("arm: the members' predictions disagree on labels")
        both = both.drop("label_m")
    missing = [s for s in SPLITS if s not in both["split"].unique().to_list()]
    if missing:
        raise ValueError(
            f"arm: predictions lack split(s) {missing}; run with bench.selection set "
            "(split B, valid_b, fits the ensembles)"
        )
    return {s: both.filter(pl.col("split") == s).sort("row_id") for s in SPLITS}


def combine(parts: dict[str, pl.DataFrame], combiner: str) -> ArmOutput:
    """One ensemble rule over the members' logits z0, z1, ..."""
    cols = [c for c in parts[FIT].columns if c.startswith("z")]
    label = {s: parts[s]["label"].to_numpy() for s in SPLITS}
    z = {s: parts[s].select(cols).to_numpy() for s in SPLITS}  # (R, M)
    weights = None
    if combiner == "ens_mean_prob":
        mean = {s: np.clip(_sigmoid(z[s]).mean(1), 1e-7, 1 - 1e-7) for s in SPLITS}
        logit = {s: np.log(mean[s] / (1 - mean[s])) for s in SPLITS}
    elif combiner == "ens_mean_logit":
        logit = {s: z[s].mean(1) for s in SPLITS}
    elif combiner == "ens_stack":
        fit = fit_logistic(z[FIT], label[FIT])
        logit, weights = {s: fit.logit(z[s]) for s in SPLITS}, [*fit.coef.tolist(), fit.intercept]
    else:
        raise ValueError(f"unknown ensemble rule {combiner!r}")
    return ArmOutput(label, logit, combiner, weights)


def best_of(parts: dict[str, pl.DataFrame], combiners: Sequence[str]) -> ArmOutput:
    """The combiner with the highest AUC on split B (never test)."""
    outs = [combine(parts, c) for c in combiners]
    fit_auc = [o.scores(FIT)["auc"] for o in outs]
    pick = max(range(len(outs)), key=lambda i: -math.inf if math.isnan(fit_auc[i]) else fit_auc[i])
    return outs[pick]


def refit(frame: pl.DataFrame) -> ArmOutput:
    """The joint model's post-hoc refit ``a*z_wide + b*z_deep + c``, fitted on split B: the
    same treatment the stacker gives the separately trained halves."""
    wide, deep = aligned([frame], "wide_logit"), aligned([frame], "deep_logit")
    label = {s: wide[s]["label"].to_numpy() for s in SPLITS}
    x = {s: np.stack([wide[s]["z0"].to_numpy(), deep[s]["z0"].to_numpy()], 1) for s in SPLITS}
    fit = refit_towers(x[FIT][:, 0], x[FIT][:, 1], label[FIT])
    weights = [*fit.coef.tolist(), fit.intercept]
    return ArmOutput(label, {s: fit.logit(x[s]) for s in SPLITS}, None, weights)


def arm_output(arm: str, frames: Sequence[pl.DataFrame]) -> ArmOutput:
    """An arm's logits from its members' predictions (`Cell.members` order)."""
    if arm == "joint_refit":
        return refit(frames[0])
    parts = aligned(frames)
    if len(frames) == 1:  # a single model: wide, deep, joint, joint_2x, stagewise, deep_k1
        label = {s: parts[s]["label"].to_numpy() for s in SPLITS}
        return ArmOutput(label, {s: parts[s]["z0"].to_numpy() for s in SPLITS})
    if arm in BEST_OF:
        return best_of(parts, BEST_OF[arm])
    if arm in ENSEMBLES:
        return combine(parts, arm)
    if arm.startswith("deep_k"):
        return combine(parts, "ens_mean_logit")
    raise ValueError(f"arm {arm!r}: no rule for {len(frames)} members")
