"""Joint-training objectives against co-adaptation (README, "Joint training without
co-adaptation"): tower dropout, per-tower auxiliary losses, held towers (warm-started
fine-tuning) and per-tower stopping. Plain torch: `WideDeepModule` calls these.

- ``tower_dropout=p``: per training row, the logit is the deep tower alone (probability p), the
  wide tower alone (p) or both (1 - 2p), each with the shared bias. No rescaling: the model
  evaluated (both towers) is exactly the "both" branch trained on a 1 - 2p share of rows, so a
  row's evaluation logit equals its training logit whenever that row draws both towers. Inverted
  dropout's 1 / (1 - p) would match the *mean* training logit instead, at the price of evaluating
  a function that no training row ever saw (every training logit would be scaled).
- ``aux_loss=lambda``: ``BCE(z) + lambda * (BCE(z_wide + b) + BCE(z_deep + b))``, one shared b.
- ``hold={wide: n, deep: m}``: a tower is not stepped for its first n (m) epochs.
- ``tower_stop={patience, min_delta}``: after each validation, a tower whose own validation AUC
  (the AUC of its logit share alone, on split A) has not improved by more than ``min_delta`` for
  ``patience`` validations in a row is frozen for the rest of the run: the stopping point the
  ensemble's member gets (it stops on its own validation AUC), one per tower.

A held or stopped tower keeps ``requires_grad`` (DDP's reducer then sees the same parameters at
every step) but its optimizer does not step and it runs in eval mode; the shared bias and the
combination weights have their own optimizer then, so they keep training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

TOWERS = ("wide", "deep")
# The options at their "off" values: a run with all of them off trains exactly as before.
OFF: dict[str, Any] = {
    "tower_dropout": 0.0,
    "aux_loss": 0.0,
    "combine": False,
    "finetune": None,
    "tower_stop": None,
}
FINETUNE_KEYS = ("lr_scale", "hold")
STOP_KEYS = ("patience", "min_delta")


@dataclass(frozen=True)
class JointSettings:
    """The joint objectives of one run (`from_config` checks them)."""

    tower_dropout: float = 0.0
    aux_loss: float = 0.0
    combine: bool = False
    lr_scale: float = 1.0
    hold: dict[str, int] = field(default_factory=dict)
    stop_patience: int | None = None
    stop_min_delta: float = 0.0

    @property
    def staged(self) -> bool:
        """Towers can pause (held or stopped) or step at another rate than the bias: the shared
        bias and combination weights then get their own optimizer."""
        return bool(any(self.hold.values()) or self.stop_patience or self.lr_scale != 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tower_dropout": self.tower_dropout,
            "aux_loss": self.aux_loss,
            "combine": self.combine,
            "lr_scale": self.lr_scale,
            "hold": dict(self.hold),
            "stop_patience": self.stop_patience,
            "stop_min_delta": self.stop_min_delta,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> JointSettings:
        return cls(**dict(values or {}))

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> JointSettings:
        """From the ``model`` config node; raises a one-line `ValueError` naming the key."""
        p = _number(model, "tower_dropout", 0.0)
        if not 0 <= p <= 0.5:
            raise ValueError(f"model.tower_dropout={p!r}: must be in [0, 0.5] (p per tower)")
        lam = _number(model, "aux_loss", 0.0)
        if lam < 0:
            raise ValueError(f"model.aux_loss={lam!r}: must be >= 0")
        combine = model.get("combine") or False
        if not isinstance(combine, bool):
            raise ValueError(f"model.combine={combine!r}: expected true or false")
        finetune = _node(model, "finetune", FINETUNE_KEYS)
        lr_scale = _number(finetune, "lr_scale", 1.0, "model.finetune.")
        if lr_scale <= 0:
            raise ValueError(f"model.finetune.lr_scale={lr_scale!r}: must be > 0")
        hold = finetune.get("hold") or {}
        if not isinstance(hold, Mapping) or set(hold) - set(TOWERS):
            raise ValueError(
                f"model.finetune.hold={hold!r}: expected {{wide: epochs, deep: epochs}}"
            )
        for tower, epochs in hold.items():
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
                raise ValueError(f"model.finetune.hold.{tower}={epochs!r}: must be an int >= 0")
        stop = _node(model, "tower_stop", STOP_KEYS)
        patience = stop.get("patience", 1) if stop else None
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"model.tower_stop.patience={patience!r}: must be an int >= 1")
        min_delta = _number(stop, "min_delta", 0.0, "model.tower_stop.")
        if min_delta < 0:
            raise ValueError(f"model.tower_stop.min_delta={min_delta!r}: must be >= 0")
        settings = cls(p, lam, combine, lr_scale, dict(hold), patience, min_delta)
        kind = model.get("kind")
        if settings != cls() and kind != "wide_deep":
            raise ValueError(
                f"model.kind={kind!r}: the joint objectives (model.tower_dropout, aux_loss, "
                "combine, finetune, tower_stop) need model.kind=wide_deep"
            )
        if (hold or patience) and model.get("frozen"):
            raise ValueError(
                "model.frozen: a frozen tower takes neither model.finetune.hold nor "
                "model.tower_stop (it never trains)"
            )
        return settings


def _number(node: Mapping[str, Any], key: str, default: float, where: str = "model.") -> float:
    value = node.get(key, default)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{where}{key}={value!r}: expected a number")
    return float(value)


def _node(model: Mapping[str, Any], key: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    node = model.get(key)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ValueError(f"model.{key}={node!r}: expected null or a mapping of {', '.join(keys)}")
    unknown = [k for k in node if k not in keys]
    if unknown:
        raise ValueError(f"model.{key}.{unknown[0]}: no such key; model.{key} takes {keys}")
    return node


def tower_masks(rows: int, p: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """Which rows keep the wide and the deep tower: one uniform draw per row (the global RNG,
    saved in checkpoints): below p deep alone, in [p, 2p) wide alone, else both."""
    u = torch.rand(rows, device=device)
    return u >= p, (u < p) | (u >= 2 * p)


def training_logit(wide: Tensor, deep: Tensor, bias: Tensor, p: float) -> Tensor:
    """The training logit under tower dropout; ``p == 0`` draws nothing and is the plain sum."""
    if p == 0:
        return wide + deep + bias
    keep_wide, keep_deep = tower_masks(wide.shape[0], p, wide.device)
    zero = torch.zeros((), dtype=wide.dtype, device=wide.device)
    return torch.where(keep_wide, wide, zero) + torch.where(keep_deep, deep, zero) + bias


def joint_loss(wide: Tensor, deep: Tensor, bias: Tensor, label: Tensor, s: JointSettings) -> Tensor:
    """The training loss of the joint model from its towers' logit shares (B,) and bias."""
    loss = F.binary_cross_entropy_with_logits(
        training_logit(wide, deep, bias, s.tower_dropout), label
    )
    if s.aux_loss:
        alone = F.binary_cross_entropy_with_logits(wide + bias, label)
        alone = alone + F.binary_cross_entropy_with_logits(deep + bias, label)
        loss = loss + s.aux_loss * alone
    return loss


class TowerStop:
    """Per-tower early stopping on each tower's own validation AUC (see the module's doc)."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = {t: -math.inf for t in TOWERS}
        self.wait = {t: 0 for t in TOWERS}
        self.stopped: dict[str, int] = {}  # tower -> the epoch after whose validation it stopped

    def update(self, scores: Mapping[str, float], epoch: int) -> list[str]:
        """Record one validation's per-tower AUCs; the towers that stop now."""
        newly = []
        for tower, score in scores.items():
            if tower in self.stopped or math.isnan(score):
                continue
            if score > self.best[tower] + self.min_delta:
                self.best[tower], self.wait[tower] = score, 0
                continue
            self.wait[tower] += 1
            if self.wait[tower] >= self.patience:
                self.stopped[tower] = epoch
                newly.append(tower)
        return newly

    def state_dict(self) -> dict[str, Any]:
        # Plain floats and ints: the checkpoint stays loadable with weights_only=True.
        return {"best": dict(self.best), "wait": dict(self.wait), "stopped": dict(self.stopped)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = {t: float(v) for t, v in state["best"].items()}
        self.wait = {t: int(v) for t, v in state["wait"].items()}
        self.stopped = {t: int(v) for t, v in state["stopped"].items()}


def paused(s: JointSettings, epoch: int, stop: TowerStop | None) -> set[str]:
    """The towers that do not step in ``epoch``: held ones and stopped ones."""
    held = {t for t, n in s.hold.items() if epoch < n}
    return held | set(stop.stopped if stop is not None else ())
