"""Wide & Deep: the two towers' logits summed under one shared bias."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from widedeep.nn.deep import DeepTower
from widedeep.nn.wide import WideTower


class TowerLogits(NamedTuple):
    """Per-row logits (B,): the final one and each tower's share (zeros for an absent tower)."""

    logit: Tensor
    wide: Tensor
    deep: Tensor


class WideDeep(nn.Module):
    """logit = wide(x) + deep(x) + bias, trained jointly under one logistic loss.

    Either tower may be None, which gives the wide-only and deep-only arms of the
    joint-vs-ensemble experiment with exactly the same code path. Pass towers built with
    ``bias=False``: the shared bias here is the model's only intercept. The model returns
    logits; the sigmoid belongs to the loss or to the caller.

    Shapes: categorical (B, F), crosses (B, C), dense (B, N), bags [(L,), (B,)] -> logits (B,).

    ``combine=True`` adds a learnt weight per tower, ``logit = a * wide(x) + b * deep(x) +
    bias`` (``scale = [a, b]``, initially 1): the function class of the ensemble's logistic
    stacker, so that a joint model warm-started from separately trained towers can start at
    their stacker (`widedeep.training.stagewise.warm_start`). Off, there is no ``scale``.
    """

    def __init__(
        self, wide: WideTower | None = None, deep: DeepTower | None = None, combine: bool = False
    ) -> None:
        super().__init__()
        if wide is None and deep is None:
            raise ValueError("WideDeep needs a wide tower, a deep tower, or both")
        self.wide = wide
        self.deep = deep
        self.bias = nn.Parameter(torch.zeros(1))
        self.scale = nn.Parameter(torch.ones(2)) if combine else None
        self.frozen: tuple[str, ...] = ()  # towers fixed by `freeze`

    def freeze(self, tower: str) -> None:
        """Fix ``tower`` ("wide" or "deep") as it is now: no gradients, and eval mode from now
        on (`train` keeps it there), so its logit is a fixed offset for the rest of the model to
        train on, without dropout noise or batch-norm statistics updates."""
        module = getattr(self, tower, None) if tower in ("wide", "deep") else None
        if module is None:
            raise ValueError(f"WideDeep.freeze: no {tower!r} tower to freeze")
        module.requires_grad_(False)
        module.eval()
        if tower not in self.frozen:
            self.frozen = (*self.frozen, tower)

    def train(self, mode: bool = True) -> WideDeep:
        super().train(mode)
        for tower in self.frozen:  # a frozen tower stays in eval mode
            getattr(self, tower).eval()
        return self

    def parts(
        self,
        categorical: Tensor,
        crosses: Tensor,
        dense: Tensor | None = None,
        bags: list[tuple[Tensor, Tensor]] | None = None,
    ) -> TowerLogits:
        zeros = torch.zeros(categorical.shape[0], device=categorical.device)
        wide = self.wide(categorical, crosses, dense, bags) if self.wide is not None else zeros
        deep = self.deep(categorical, crosses, dense, bags) if self.deep is not None else zeros
        if self.scale is not None:
            wide, deep = self.scale[0] * wide, self.scale[1] * deep
        return TowerLogits(wide + deep + self.bias, wide, deep)

    def forward(
        self,
        categorical: Tensor,
        crosses: Tensor,
        dense: Tensor | None = None,
        bags: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        return self.parts(categorical, crosses, dense, bags).logit
