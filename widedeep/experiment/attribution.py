"""How much of the joint model's prediction each tower carries, and logistic refits of the
logits (Platt scaling; a weight per tower) fitted on one split and applied to another.

Logits as in ``predictions.parquet``: z = z_wide + z_deep + b per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from widedeep.experiment.stats import auc


def _towers(z_wide: np.ndarray, z_deep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    zw, zd = np.asarray(z_wide, dtype=float), np.asarray(z_deep, dtype=float)
    if zw.shape != zd.shape or zw.ndim != 1:
        raise ValueError(f"tower logits of shapes {zw.shape} and {zd.shape}: need two (n,)")
    if not (np.isfinite(zw).all() and np.isfinite(zd).all()):
        raise ValueError("tower logits must be finite")
    return zw, zd


def variance_shares(z_wide: np.ndarray, z_deep: np.ndarray) -> dict[str, float]:
    """Each tower's centred share of the final logit's variance over rows.

    With z = z_wide + z_deep + b: share_t = Cov(z_t, z) / Var(z). Covariance is linear, so
    Cov(z_wide, z) + Cov(z_deep, z) = Var(z): the shares sum to 1, a decomposition of how the
    logit varies. A share is 0 for a constant tower, 1 for the other, and below 0 (above 1)
    where a tower works against the other. Mean |z_t| is no such thing: a constant moves
    freely between the towers and the bias without changing a prediction, and it changes
    mean |z_t| arbitrarily; the shares are centred, so constants (b included) drop out.
    NaN when z is constant."""
    zw, zd = _towers(z_wide, z_deep)
    cw, cd = zw - zw.mean(), zd - zd.mean()
    z = cw + cd
    cov_w, cov_d = float(cw @ z), float(cd @ z)
    # Var(z) as the sum of the two: the shares then add up to 1 to the last bit.
    var = cov_w + cov_d
    if not var > 0:
        return {"wide": math.nan, "deep": math.nan}
    return {"wide": cov_w / var, "deep": cov_d / var}


def auc_drop(
    label: np.ndarray, z_wide: np.ndarray, z_deep: np.ndarray, weight: np.ndarray | None = None
) -> dict[str, float]:
    """AUC lost when a tower's logit is replaced by its mean: AUC(z) - AUC(z - z_t + mean(z_t)).

    Returns ``auc`` (of z) and the drop for ``wide`` and ``deep``; 0 for a constant tower,
    negative where the tower hurt the ranking. The bias is a constant and does not change AUC."""
    zw, zd = _towers(z_wide, z_deep)
    z = zw + zd
    full = auc(label, z, weight)
    return {
        "auc": full,
        "wide": full - auc(label, z - zw + zw.mean(), weight),
        "deep": full - auc(label, z - zd + zd.mean(), weight),
    }


# -- logistic refits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticFit:
    """logit = features @ coef + intercept, fitted by ``fit_logistic``."""

    coef: np.ndarray
    intercept: float
    n_iter: int
    converged: bool

    def logit(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=float)
        return (x[:, None] if x.ndim == 1 else x) @ self.coef + self.intercept


def _objective(a: np.ndarray, y: np.ndarray, w: np.ndarray, theta: np.ndarray, ridge: float):
    eta = a @ theta
    # log(1 + e^eta) - y * eta: the log loss, stable for any eta.
    return float(w @ (np.logaddexp(0.0, eta) - y * eta)) + 0.5 * ridge * float(theta @ theta)


def fit_logistic(
    features: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray | None = None,
    ridge: float = 1e-8,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> LogisticFit:
    """Logistic regression of ``label`` on k features plus an intercept, by Newton (IRLS).

    Minimises the weighted mean log loss + ridge / 2 * |theta|^2 (intercept included). The
    ridge keeps the optimum finite on separable data (the unpenalised one is at infinity),
    where the fit then ends with large, finite weights; on other data it moves the weights by
    ~ridge relative, so this is sklearn's LogisticRegression(penalty=None) to ~1e-8. Each
    Newton step is halved until the objective does not increase; stops when no parameter
    moves by more than ``tol``. ``features``: (n,) or (n, k)."""
    x = np.asarray(features, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    y = np.asarray(label, dtype=float)
    if len(x) != len(y) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"fit_logistic: {len(x)} feature rows and {len(y)} 0/1 labels needed")
    if len(np.unique(y)) < 2:
        raise ValueError("fit_logistic: the labels hold one class only")
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    w = w / w.sum()
    a = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros(a.shape[1])
    loss = _objective(a, y, w, theta, ridge)
    for it in range(1, max_iter + 1):
        p = np.exp(-np.logaddexp(0.0, -(a @ theta)))  # the sigmoid, without overflow
        grad = a.T @ (w * (p - y)) + ridge * theta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + ridge * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while True:  # halve until the objective does not increase (Newton may overshoot)
            new = theta - scale * step
            new_loss = _objective(a, y, w, new, ridge)
            if new_loss <= loss or scale < 1e-10:
                break
            scale /= 2
        moved = float(np.max(np.abs(new - theta)))
        theta, loss = new, new_loss
        if moved <= tol:
            return LogisticFit(theta[:-1].copy(), float(theta[-1]), it, True)
    return LogisticFit(theta[:-1].copy(), float(theta[-1]), max_iter, False)


def platt_scale(
    fit_logit: np.ndarray, fit_label: np.ndarray, apply_logit: np.ndarray
) -> tuple[np.ndarray, LogisticFit]:
    """Platt scaling: fit a * z + c on one split's (logit, label) - split B in the harness -
    and apply it to another split's logits. Returns (calibrated logits, fit: a = coef[0],
    c = intercept). A monotone map: it changes log loss, never AUC."""
    fit = fit_logistic(np.asarray(fit_logit, dtype=float), fit_label)
    return fit.logit(np.asarray(apply_logit, dtype=float)), fit


def refit_towers(z_wide: np.ndarray, z_deep: np.ndarray, label: np.ndarray) -> LogisticFit:
    """The 3-parameter refit a * z_wide + b * z_deep + c on given rows (the harness's
    ``joint_refit`` arm fits it on split B): coef = (a, b), intercept = c. Apply it with
    ``fit.logit(np.stack([z_wide, z_deep], 1))``."""
    zw, zd = _towers(z_wide, z_deep)
    return fit_logistic(np.stack([zw, zd], axis=1), label)
