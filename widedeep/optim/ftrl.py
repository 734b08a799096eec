"""FTRL-Proximal, the optimizer of the wide (linear) part in production click models."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class FTRL(torch.optim.Optimizer):
    """FTRL-Proximal with per-coordinate learning rates (McMahan et al., KDD 2013, Algorithm 1).

    For every coordinate i with gradient g (n and z start as described below)::

        sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
        z    += g - sigma * w
        n    += g^2
        w     = 0                                                   if |z| <= l1
              = -(z - sign(z) * l1) / ((beta + sqrt(n)) / alpha + l2)   otherwise

    ``n`` is the sum of squared gradients, so the per-coordinate learning rate is
    ``alpha / (beta + sqrt(n))``: rare features (few, small gradients) keep a large step.

    Why L1 gives exact zeros: ``w`` is the closed-form minimiser of
    ``z.w + l1 |w| + (l2 + (beta + sqrt(n)) / alpha) w^2 / 2``, and whenever the accumulated
    gradient ``|z|`` does not exceed ``l1`` that minimiser is exactly 0, not merely small. A weight
    that is exactly 0 need not be stored or served, which is what keeps a wide model over
    billions of cross ids small. (Sub)gradient descent on an L1 penalty leaves them hovering near 0.

    Initial state: ``z`` and ``n`` are created at a parameter's first step. ``n`` starts at 0 and
    ``z`` at ``-w * (beta / alpha + l2) - sign(w) * l1``, the value for which the closed form above
    returns the parameter's current ``w``; so a step with zero gradient leaves it as it was. If
    ``beta == 0`` and ``l2 == 0`` no such ``z`` exists (the denominator is 0): ``z`` then starts at
    0 and the parameter's current values are discarded, i.e. it starts from w = 0 as in the paper.

    Shapes: ``z`` and ``n`` have the parameter's shape and dtype (the state is dense: two extra
    copies of each table). Dense gradients update every coordinate. Sparse gradients
    (``nn.Embedding(..., sparse=True)``, ``nn.EmbeddingBag(..., sparse=True)``) are coalesced, so
    repeated ids are summed, and only the touched rows of the parameter, ``z`` and ``n`` are read
    and written; the gradient is never made dense. Rows without a gradient keep their weight.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        alpha: learning-rate scale (> 0); the step of a coordinate is ``alpha / (beta + sqrt(n))``.
        beta: smoothing of the learning rate (>= 0); 1 is the paper's recommendation.
        l1: L1 strength (>= 0); larger values give more weights that are exactly 0.
        l2: L2 strength (>= 0).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        alpha: float = 0.05,
        beta: float = 1.0,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        # `not x > 0` rather than `x <= 0` so that NaN is rejected too.
        if not alpha > 0:
            raise ValueError(f"FTRL: alpha must be > 0, got alpha={alpha!r}")
        for name, value in (("beta", beta), ("l1", l1), ("l2", l2)):
            if not value >= 0:
                raise ValueError(f"FTRL: {name} must be >= 0, got {name}={value!r}")
        # Stored as "lr" so that learning-rate schedulers and monitors see FTRL's alpha.
        super().__init__(params, {"lr": alpha, "beta": beta, "l1": l1, "l2": l2})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one FTRL step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            alpha, beta, l1, l2 = group["lr"], group["beta"], group["l1"], group["l2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if beta == 0 and l2 == 0:
                        state["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    else:
                        state["z"] = -p * (beta / alpha + l2) - p.sign() * l1
                z, n = state["z"], state["n"]

                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()  # duplicate ids must be summed, not overwritten
                    idx = tuple(grad.indices())  # one index tensor per sparse dim
                    w_rows, z_rows, n_rows = p[idx], z[idx], n[idx]  # gathered copies
                    _ftrl_update(w_rows, z_rows, n_rows, grad.values(), alpha, beta, l1, l2)
                    p.index_put_(idx, w_rows)
                    z.index_put_(idx, z_rows)
                    n.index_put_(idx, n_rows)
                else:
                    _ftrl_update(p, z, n, grad, alpha, beta, l1, l2)
        return loss


def _ftrl_update(
    w: Tensor, z: Tensor, n: Tensor, g: Tensor, alpha: float, beta: float, l1: float, l2: float
) -> None:
    """One FTRL-Proximal update of ``w``, ``z`` and ``n`` in place (all of the same shape)."""
    sqrt_n_old = n.sqrt()
    n.addcmul_(g, g)
    sqrt_n = n.sqrt()
    z.add_(g - (sqrt_n - sqrt_n_old) / alpha * w)
    denominator = (sqrt_n + beta) / alpha + l2
    # Where beta == l2 == n == 0 this is 0/0, but there z == 0 too and the mask picks the 0.
    w_new = (z.sign() * l1 - z) / denominator
    w.copy_(torch.where(z.abs() <= l1, torch.zeros_like(w_new), w_new))
