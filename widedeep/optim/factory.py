"""Optimizers by name, so each tower's optimizer is a config choice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from widedeep.optim.ftrl import FTRL

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "sparse_adam": torch.optim.SparseAdam,
    "ftrl": FTRL,
}
# Optimizers that accept sparse gradients (from tables built with sparse=True).
SPARSE_CAPABLE = {"sgd", "adagrad", "sparse_adam", "ftrl"}


# Optimizers whose weight_decay adds ``l2 * w`` to the gradient: the gradient of the penalty
# ``l2 / 2 * ||E||^2`` on a whole table (FuxiCTR's / BARS's ``embedding_regularizer``).
COUPLED_DECAY = {"sgd", "adam", "adagrad"}


def build_optimizer(
    params: Iterable[nn.Parameter],
    settings: Mapping[str, Any],
    who: str = "optimizer",
    tables: set[int] | None = None,
) -> torch.optim.Optimizer:
    """``settings``: ``{name: adam, lr: 1e-3, ...}``; every other key goes to the optimizer.

    ``embedding_l2`` (a setting, default 0) puts an L2 penalty ``embedding_l2 / 2 * ||E||^2`` on
    the embedding tables among ``params`` (those whose ``id`` is in ``tables``), as BARS
    regularises embeddings; the other parameters keep the optimizer's own ``weight_decay``.
    """
    settings = dict(settings)
    name = settings.pop("name", None)
    if name not in OPTIMIZERS:
        raise ValueError(f"{who}: unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")
    params = list(params)
    if not params:
        raise ValueError(f"{who}: no parameters to optimize")
    embedding_l2 = float(settings.pop("embedding_l2", 0.0) or 0.0)
    if embedding_l2 < 0:
        raise ValueError(f"{who}: embedding_l2 must be >= 0, got {embedding_l2}")
    if embedding_l2 > 0:
        if name not in COUPLED_DECAY:
            raise ValueError(
                f"{who}: embedding_l2 needs an optimizer with coupled weight decay "
                f"({sorted(COUPLED_DECAY)}), not {name!r} (FTRL has its own l1/l2)"
            )
        embedded = [p for p in params if id(p) in (tables or set())]
        if not embedded:
            raise ValueError(f"{who}: embedding_l2 is set but there are no embedding tables")
        rest = [p for p in params if id(p) not in (tables or set())]
        params = [{"params": embedded, "weight_decay": embedding_l2}]
        if rest:
            params.append({"params": rest})
    if name == "ftrl" and "lr" in settings:
        # FTRL names its learning rate alpha (McMahan et al. 2013).
        settings["alpha"] = settings.pop("lr")
    try:
        return OPTIMIZERS[name](params, **settings)
    except TypeError as err:
        raise ValueError(f"{who}: bad settings {settings} for {name}: {err}") from None


SCHEDULERS: dict[str, type] = {
    "step": torch.optim.lr_scheduler.StepLR,
    "exponential": torch.optim.lr_scheduler.ExponentialLR,
    "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
}


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: Mapping[str, Any] | None
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch learning-rate schedule, ``{name: step, step_size: 2, gamma: 0.5}``, or None."""
    if not settings or not settings.get("name"):
        return None
    settings = dict(settings)
    name = settings.pop("name")
    if name not in SCHEDULERS:
        raise ValueError(f"optim.scheduler: unknown {name!r}; choose from {sorted(SCHEDULERS)}")
    try:
        return SCHEDULERS[name](optimizer, **settings)
    except TypeError as err:
        raise ValueError(f"optim.scheduler: bad settings {settings} for {name}: {err}") from None
