"""The LightningModule: loss, per-tower optimizers and metrics around a `WideDeep` model."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import ModelCheckpoint
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from .batch import Batch
from .checkpoint import plain
from .deep import DeepTower
from .embedding import FieldEmbedding
from .features import Schema
from .model import WideDeep
from .optim import SPARSE_CAPABLE, build_optimizer, build_scheduler
from .wide import WideTower

log = logging.getLogger("widedeep")
# Adam options SparseAdam does not take: with optim.X.name=sparse_adam they go to the Adam of
# the tower's dense parameters only.
DENSE_ONLY = ("fused", "foreach")

KINDS = ("wide", "deep", "wide_deep")
# The global RNG state (dropout's) in a checkpoint: Lightning does not save it.
RNG_KEY = "widedeep_rng_state"


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite.

    Also a `ValueError`: the fix is the user's (a learning rate, the data), so the command line
    reports it as one line with exit code 2, like a configuration mistake.
    """


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
        model: your own ``nn.Module`` to train instead of the one ``kind`` builds (the towers
            composed with another architecture, see examples/fm_wide.py). It is called as
            ``model(**batch.inputs())`` -> logits (B,); its ``wide`` and ``deep`` submodules (either
            may be absent) each get their optimizer, its other parameters go with ``wide`` (else
            ``deep``). Not saved in hyper-parameters: pass it again to ``load_from_checkpoint``.
    """

    def __init__(
        self,
        schema: dict[str, Any],
        kind: str = "wide_deep",
        wide: dict[str, Any] | None = None,
        deep: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        # Plain dicts and lists (not DictConfig, tuples, ...) so that the checkpoint loads with
        # torch.load(weights_only=True). save_hyperparameters reads these locals as they are now.
        schema, wide, deep, optim = plain(schema), plain(wide), plain(deep), plain(optim)
        self.save_hyperparameters(ignore=["model"])
        self.automatic_optimization = False
        self.kind = kind
        if model is None:
            model = build_model(Schema.from_dict(schema), kind, wide or {}, deep or {})
        self.model = model
        self.optim_cfg = dict(optim or {})
        for tower in ("wide", "deep"):
            if getattr(self.model, tower, None) is not None and tower not in self.optim_cfg:
                raise ValueError(f"optim: no settings for the {tower} tower (optim.{tower})")
        self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        self.val_logloss, self.test_logloss = MeanMetric(), MeanMetric()
        self.train_time = 0.0

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.inputs())

    # -- optimization --------------------------------------------------------------------------

    def tower_parameters(self) -> dict[str, list[torch.nn.Parameter]]:
        """Parameters per optimizer; the rest (`WideDeep`'s shared bias) goes with the wide
        tower when there is one (the paper's wide part is the logistic regression with its
        intercept)."""
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower, None)
            if module is not None:
                groups[tower] = list(module.parameters())
        if not groups:
            raise ValueError("the model has neither a `wide` nor a `deep` submodule to optimize")
        taken = {id(p) for params in groups.values() for p in params}
        rest = [p for p in self.model.parameters() if id(p) not in taken]
        groups["wide" if "wide" in groups else "deep"].extend(rest)
        return groups

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        embeddings = [m for m in self.model.modules() if isinstance(m, FieldEmbedding)]
        tables = {id(m.weight) for m in embeddings}
        sparse = {id(m.weight) for m in embeddings if m.sparse}
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
                        f"(set model.{tower}.sparse_min_rows)"
                    )
                # SparseAdam takes sparse gradients only: the tower's dense parameters (MLP,
                # bias) get Adam with the same settings; fused/foreach are Adam's alone.
                sparse_settings = {k: v for k, v in settings.items() if k not in DENSE_ONLY}
                optimizers.append(build_optimizer(sparse_params, sparse_settings, who))
                if dense_params:
                    optimizers.append(
                        build_optimizer(dense_params, {**settings, "name": "adam"}, who)
                    )
            else:
                if settings.get("embedding_l2") and sparse_params:
                    raise ValueError(
                        f"{who}: embedding_l2 does not work with sparse gradients; "
                        f"unset model.{tower}.sparse_min_rows"
                    )
                optimizers.append(build_optimizer(params, settings, who, tables=tables))
        schedulers = [build_scheduler(opt, self.optim_cfg.get("scheduler")) for opt in optimizers]
        return optimizers, [s for s in schedulers if s is not None]

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        loss = F.binary_cross_entropy_with_logits(self(batch), batch.label)
        if not torch.isfinite(loss):
            # Stop now: every later step would only spread NaN through both towers' weights.
            step = self.trainer.fit_loop.epoch_loop.total_batch_idx
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); likely cause: {self._likely_cause(batch)}"
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
        if self._logs_this_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the loggers write this step (every ``trainer.log_every_n_steps``).

        A step-level ``self.log`` costs Lightning bookkeeping on every call (about 1% of a Criteo
        step on CPU) and is only written out on those steps, so the others skip it; the progress
        bar then shows the loss of the last written step. The test is Lightning's own (a private
        attribute); a Lightning without it logs every step, as before.
        """
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    @torch.no_grad()
    def _likely_cause(self, batch: Batch) -> str:
        """Why the loss is not finite: the inputs, else the first tower whose weights or logit
        are not finite (named with its optimizer setting), else the sum of the two."""
        if not torch.isfinite(batch.dense).all():
            return "non-finite dense input features in this batch"
        # Per-tower logits where the model has them (`WideDeep.parts`; a custom model may not).
        parts = self.model.parts(**batch.inputs()) if hasattr(self.model, "parts") else None
        for tower, params in self.tower_parameters().items():
            weights_ok = all(torch.isfinite(p).all() for p in params)
            logits_ok = parts is None or bool(torch.isfinite(getattr(parts, tower)).all())
            if not (weights_ok and logits_ok):
                settings = self.optim_cfg[tower]
                return (
                    f"the {tower} tower {'weights' if not weights_ok else 'logits'} diverged: "
                    f"optim.{tower}.lr={settings.get('lr')} is too high for "
                    f"{settings.get('name')}; lower it or set optim.grad_clip"
                )
        return "the logits overflowed: lower optim.wide.lr / optim.deep.lr or set optim.grad_clip"

    # -- checkpoints -----------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Dropout draws from the global RNG, which Lightning does not save: without it a resumed
        # run would draw other masks than an uninterrupted one. A uint8 tensor: weights_only-safe.
        checkpoint[RNG_KEY] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only when resuming training: loading weights for inference must not reseed the caller.
        if self._trainer is not None and self.trainer.state.fn == "fit" and RNG_KEY in checkpoint:
            torch.set_rng_state(checkpoint[RNG_KEY])

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
        wide = getattr(self.model, "wide", None)
        if isinstance(wide, WideTower):
            nonzero = wide.num_nonzero()
            self.log("wide/nonzero", float(nonzero))
            self.log("wide/nonzero_share", nonzero / max(1, wide.num_weights()))

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate(self, batch: Batch, auc: BinaryAUROC, logloss: MeanMetric, prefix: str) -> None:
        logits = self(batch)
        auc.update(torch.sigmoid(logits), batch.label.long())
        logloss.update(F.binary_cross_entropy_with_logits(logits, batch.label, reduction="none"))
        self.log(f"{prefix}/auc", auc, prog_bar=True, on_step=False, on_epoch=True)
        self.log(f"{prefix}/logloss", logloss, prog_bar=True, on_step=False, on_epoch=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_auc, self.val_logloss, "val")

    def on_validation_epoch_end(self) -> None:
        # BARS/FuxiCTR's model selection metric ({AUC: 1, logloss: -1}), for trainer.monitor.
        # The metric objects, not callback_metrics: those hold this epoch's values only after
        # this hook. compute() syncs across DDP ranks and is cached for Lightning's own logging.
        if self.val_auc.update_count:
            score = self.val_auc.compute() - self.val_logloss.compute()
            self.log("val/auc_minus_logloss", score, on_step=False, on_epoch=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_auc, self.test_logloss, "test")

    # -- sizes ---------------------------------------------------------------------------------

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per tower; for the wide tower also its non-zero weights (its L1 size)."""
        counts = {"total": sum(p.numel() for p in self.model.parameters())}
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower, None)
            counts[tower] = sum(p.numel() for p in module.parameters()) if module else 0
        wide = getattr(self.model, "wide", None)
        counts["wide_nonzero"] = wide.num_nonzero() if isinstance(wide, WideTower) else 0
        return counts


class LatestCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``: the latest state, at the end of every epoch (whether or not the
    validation AUC improved) and, with ``every_n_steps``, every that many training batches.

    A run killed mid-epoch then loses at most ``every_n_steps`` batches: resuming from the file
    restores the weights, both towers' optimizers, the schedulers, the loops and the data order
    (`BatchLoader.state_dict`). Steps count training batches over all epochs, not optimizer
    steps (Lightning's ``global_step`` counts one per tower per batch here). Lightning writes the
    file atomically, so a kill during a save leaves the previous one intact.
    """

    def __init__(self, dirpath: Any, every_n_steps: int | None = None) -> None:
        valid = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if every_n_steps is not None and not (valid and every_n_steps >= 1):
            raise ValueError(
                f"trainer.checkpoint_every_n_steps={every_n_steps!r}: expected an int >= 1 or null"
            )
        super().__init__(dirpath=dirpath, filename="last", enable_version_counter=False)
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)
        done = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        if self.every_n_steps and done % self.every_n_steps == 0:
            trainer.save_checkpoint(self.format_checkpoint_name({}), weights_only=False)


class ReduceLROnPlateau(pl.Callback):
    """Multiply every optimizer's learning rate by ``factor`` (not below ``min_lr``) after each
    validation whose ``monitor`` (higher is better) did not beat its best by ``min_delta``.

    The schedule of BARS/FuxiCTR, whose benchmark numbers use it with early stopping: training
    goes on from the current weights at a tenth of the rate. Works on both towers' optimizers
    under manual optimization (FTRL's alpha is its ``lr``). The best value is checkpointed, the
    rates live in the optimizers' state, so a resumed run continues the schedule.
    """

    def __init__(
        self, monitor: str, factor: float = 0.1, min_lr: float = 1e-6, min_delta: float = 1e-6
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"trainer.reduce_lr_on_plateau.factor={factor}: must be in (0, 1)")
        if min_lr < 0:
            raise ValueError(f"trainer.reduce_lr_on_plateau.min_lr={min_lr}: must be >= 0")
        self.monitor, self.factor, self.min_lr, self.min_delta = monitor, factor, min_lr, min_delta
        self.best = -math.inf

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Only validations inside fit: not the sanity check, nor a later trainer.validate().
        fitting = trainer.state.fn == "fit"
        if not fitting or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value > self.best + self.min_delta:
            self.best = value
            return
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = max(group["lr"] * self.factor, self.min_lr)
        log.info("%s did not improve (%.6f): learning rates x %g", self.monitor, value, self.factor)

    def state_dict(self) -> dict[str, float]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.best = state_dict["best"]
