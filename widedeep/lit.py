"""The LightningModule: loss, per-tower optimizers and metrics around a `WideDeep` model."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from .batch import Batch
from .deep import DeepTower
from .embedding import FieldEmbedding
from .features import Schema
from .model import WideDeep
from .optim import SPARSE_CAPABLE, build_optimizer, build_scheduler
from .wide import WideTower

KINDS = ("wide", "deep", "wide_deep")


def build_model(
    schema: Schema, kind: str, wide: Mapping[str, Any], deep: Mapping[str, Any]
) -> WideDeep:
    """The wide arm, the deep arm or the joint model, from primitive settings."""
    if kind not in KINDS:
        raise ValueError(f"model.kind must be one of {KINDS}, got {kind!r}")
    wide_tower = deep_tower = None
    if kind in ("wide", "wide_deep"):
        wide_tower = WideTower(schema, bias=False, **dict(wide))
    if kind in ("deep", "wide_deep"):
        settings = dict(deep)
        settings["hidden"] = tuple(settings.get("hidden", ()))
        deep_tower = DeepTower(schema, bias=False, **settings)
    return WideDeep(wide_tower, deep_tower)


class WideDeepModule(pl.LightningModule):
    """Trains the wide, deep or joint model with one optimizer per tower.

    Each tower has its own optimizer (the paper: FTRL + L1 on wide, AdaGrad on deep), so
    optimization is manual: one backward of the shared loss, then a step of each optimizer.
    Everything the constructor takes is primitive, so ``load_from_checkpoint`` needs nothing else.

    Args:
        schema: `Schema.to_dict()` of the dataset.
        kind: "wide", "deep" or "wide_deep".
        wide, deep: keyword arguments of `WideTower` / `DeepTower` (minus schema and bias).
        optim: ``{"wide": {name, lr, ...}, "deep": {name, lr, ...}, "grad_clip": float|None}``.
    """

    def __init__(
        self,
        schema: dict[str, Any],
        kind: str = "wide_deep",
        wide: dict[str, Any] | None = None,
        deep: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.kind = kind
        self.model = build_model(Schema.from_dict(schema), kind, wide or {}, deep or {})
        self.optim_cfg = dict(optim or {})
        for tower in ("wide", "deep"):
            if getattr(self.model, tower) is not None and tower not in self.optim_cfg:
                raise ValueError(f"optim: no settings for the {tower} tower (optim.{tower})")
        self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        self.val_logloss, self.test_logloss = MeanMetric(), MeanMetric()
        self.train_time = 0.0

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.inputs())

    # -- optimization --------------------------------------------------------------------------

    def tower_parameters(self) -> dict[str, list[torch.nn.Parameter]]:
        """Parameters per optimizer; the shared bias goes with the wide tower when there is one
        (the paper's wide part is the logistic regression with its intercept)."""
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower)
            if module is not None:
                groups[tower] = list(module.parameters())
        groups["wide" if "wide" in groups else "deep"].append(self.model.bias)
        return groups

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        sparse = {
            id(m.weight) for m in self.model.modules() if isinstance(m, FieldEmbedding) and m.sparse
        }
        optimizers = []
        for tower, params in self.tower_parameters().items():
            settings, who = dict(self.optim_cfg[tower]), f"optim.{tower}"
            sparse_params = [p for p in params if id(p) in sparse]
            dense_params = [p for p in params if id(p) not in sparse]
            name = settings.get("name")
            if sparse_params and name not in SPARSE_CAPABLE:
                raise ValueError(
                    f"{who}: {name!r} cannot take the sparse gradients of model.{tower}'s "
                    f"tables (sparse_min_rows); use one of {sorted(SPARSE_CAPABLE)}"
                )
            if name == "sparse_adam":
                if not sparse_params:
                    raise ValueError(
                        f"{who}: sparse_adam needs sparse tables in model.{tower} "
                        "(set model.{tower}.sparse_min_rows)"
                    )
                # SparseAdam takes sparse gradients only: the tower's dense parameters (MLP,
                # bias) get Adam with the same settings.
                optimizers.append(build_optimizer(sparse_params, settings, who))
                if dense_params:
                    optimizers.append(
                        build_optimizer(dense_params, {**settings, "name": "adam"}, who)
                    )
            else:
                optimizers.append(build_optimizer(params, settings, who))
        schedulers = [build_scheduler(opt, self.optim_cfg.get("scheduler")) for opt in optimizers]
        return optimizers, [s for s in schedulers if s is not None]

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        loss = F.binary_cross_entropy_with_logits(self(batch), batch.label)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); likely causes: a learning rate too "
                "high for this optimizer, or non-finite input features"
            )
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.optim_cfg.get("grad_clip")
        for opt in optimizers:
            if clip:
                self.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
            opt.step()
        self.train_time += time.perf_counter() - start
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_train_epoch_start(self) -> None:
        # Manual optimization: the schedulers are ours to step. Stepping at the start of every
        # epoch after the first (not at its end, which comes after the checkpoint is written)
        # keeps a run resumed from a checkpoint on the same schedule as an uninterrupted one.
        if self.current_epoch == 0:
            return
        schedulers = self.lr_schedulers() or []
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self.model.wide is not None:
            nonzero = self.model.wide.num_nonzero()
            self.log("wide/nonzero", float(nonzero))
            self.log("wide/nonzero_share", nonzero / max(1, self.model.wide.num_weights()))

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, batch: Batch, auc: BinaryAUROC, logloss: MeanMetric, prefix: str) -> None:
        logits = self(batch)
        auc.update(torch.sigmoid(logits), batch.label.long())
        logloss.update(F.binary_cross_entropy_with_logits(logits, batch.label, reduction="none"))
        self.log(f"{prefix}/auc", auc, prog_bar=True, on_step=False, on_epoch=True)
        self.log(f"{prefix}/logloss", logloss, prog_bar=True, on_step=False, on_epoch=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_auc, self.val_logloss, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_auc, self.test_logloss, "test")

    # -- sizes ---------------------------------------------------------------------------------

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per tower; for the wide tower also its non-zero weights (its L1 size)."""
        counts = {"total": sum(p.numel() for p in self.model.parameters())}
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower)
            counts[tower] = sum(p.numel() for p in module.parameters()) if module else 0
        counts["wide_nonzero"] = self.model.wide.num_nonzero() if self.model.wide else 0
        return counts
