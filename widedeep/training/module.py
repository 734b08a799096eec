"""The LightningModule: loss, per-tower optimizers and metrics around a `WideDeep` model."""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from widedeep.core.batch import Batch
from widedeep.core.schema import Schema
from widedeep.nn.build import build_model
from widedeep.nn.embedding import FieldEmbedding
from widedeep.nn.wide import WideTower
from widedeep.optim.factory import SPARSE_CAPABLE, build_optimizer, build_scheduler
from widedeep.training.checkpoint import plain
from widedeep.training.joint import TOWERS, JointSettings, TowerStop, joint_loss, paused

# Adam options SparseAdam does not take: with optim.X.name=sparse_adam they go to the Adam of
# the tower's dense parameters only.
DENSE_ONLY = ("fused", "foreach")
# The global RNG state (dropout's) in a checkpoint: Lightning does not save it.
RNG_KEY = "widedeep_rng_state"
# The per-tower stopping state in a checkpoint (`widedeep.training.joint.TowerStop`).
TOWER_STOP_KEY = "widedeep_tower_stop"


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite.

    Also a `ValueError`: the fix is the user's (a learning rate, the data), so the command line
    reports it as one line with exit code 2, like a configuration mistake.
    """


class DivergedLossError(FloatingPointError, ValueError):
    """The training loss stayed far above any constant predictor's: the run diverged.

    A `ValueError` like `NonFiniteLossError`: one line and exit code 2 on the command line."""


class DivergenceWatch:
    """Flags a diverged run: the median loss of the last ``window`` training batches is above
    ``factor`` x log 2 (``trainer.divergence``; docs/faults.md, "A diverging run").

    log 2 is the log loss of predicting 0.5 for every row: what a freshly initialised model
    (logits near 0) scores, and the most that predicting any constant click rate p scores (its
    log loss, the labels' entropy, is at most log 2). A healthy run stays below it after its
    first batches; the median ignores the odd bad batch of an aggressive learning rate.
    """

    def __init__(self, factor: float, window: int) -> None:
        self.factor, self.window = factor, window
        self.limit = factor * math.log(2)
        self.losses: deque[float] = deque(maxlen=window)

    def diverged(self, loss: float) -> float | None:
        """Record one batch's loss; the window's median if it is above the limit, else None."""
        self.losses.append(loss)
        if len(self.losses) < self.window:
            return None
        median = statistics.median(self.losses)
        return median if median > self.limit else None


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
        frozen: None, or "wide" / "deep" (``kind="wide_deep"`` only): that tower is frozen
            (`WideDeep.freeze`: no gradients, no optimizer, eval mode), a fixed offset the other
            tower and the shared bias train on. Its weights come from an earlier run:
            `widedeep.training.stagewise.load_frozen_tower`, or this module's checkpoint.
        model: your own ``nn.Module`` to train instead of the one ``kind`` builds (the towers
            composed with another architecture, see examples/fm_wide.py). It is called as
            ``model(**batch.inputs())`` -> logits (B,); its ``wide`` and ``deep`` submodules (either
            may be absent) each get their optimizer, its other parameters go with ``wide`` (else
            ``deep``). Not saved in hyper-parameters: pass it again to ``load_from_checkpoint``.
        joint: the joint objectives, `JointSettings.to_dict` (``kind="wide_deep"``; None: the
            plain joint loss): tower dropout, auxiliary losses, combination weights, held towers,
            a fine-tuning learning-rate scale and per-tower stopping (widedeep/training/joint.py).
    """

    def __init__(
        self,
        schema: dict[str, Any],
        kind: str = "wide_deep",
        wide: dict[str, Any] | None = None,
        deep: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        model: torch.nn.Module | None = None,
        frozen: str | None = None,
        joint: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain dicts and lists (not DictConfig, tuples, ...) so that the checkpoint loads with
        # torch.load(weights_only=True). save_hyperparameters reads these locals as they are now.
        schema, wide, deep, optim = plain(schema), plain(wide), plain(deep), plain(optim)
        self.save_hyperparameters(ignore=["model"])
        self.automatic_optimization = False
        self.kind = kind
        self.joint = JointSettings.from_dict(joint)
        if model is None:
            model = build_model(
                Schema.from_dict(schema), kind, wide or {}, deep or {}, self.joint.combine
            )
        if self.joint != JointSettings() and not hasattr(model, "parts"):
            raise ValueError("the joint objectives need a model with per-tower logits (parts)")
        self.model = model
        self.frozen = frozen
        if frozen is not None:
            if kind != "wide_deep" or not hasattr(model, "freeze"):
                raise ValueError(
                    f"model.frozen={frozen!r}: needs model.kind=wide_deep (got {kind!r}); a "
                    "frozen tower is the fixed offset the other tower trains on"
                )
            if frozen not in ("wide", "deep"):
                raise ValueError(f"model.frozen={frozen!r}: must be null, wide or deep")
            model.freeze(frozen)
        self.optim_cfg = dict(optim or {})
        for tower in ("wide", "deep"):
            if tower == frozen:
                continue
            if getattr(self.model, tower, None) is not None and tower not in self.optim_cfg:
                raise ValueError(f"optim: no settings for the {tower} tower (optim.{tower})")
        self.tower_stop = None
        if self.joint.stop_patience:
            self.tower_stop = TowerStop(self.joint.stop_patience, self.joint.stop_min_delta)
            self.val_tower_auc = torch.nn.ModuleDict({t: BinaryAUROC() for t in TOWERS})
        self.optimizer_towers: list[str] = []  # the tower each optimizer steps, in order
        self.val_auc, self.test_auc = BinaryAUROC(), BinaryAUROC()
        self.val_logloss, self.test_logloss = MeanMetric(), MeanMetric()
        self.train_time = 0.0
        # Set by widedeep.training.run from trainer.divergence (not a hyper-parameter).
        self.divergence: DivergenceWatch | None = None

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.inputs())

    # -- optimization --------------------------------------------------------------------------

    def tower_parameters(self) -> dict[str, list[torch.nn.Parameter]]:
        """Parameters per optimizer; the rest (`WideDeep`'s shared bias) goes with the wide
        tower when there is one (the paper's wide part is the logistic regression with its
        intercept). Frozen parameters (``requires_grad=False``, a frozen tower) get none, so
        with ``frozen="wide"`` the bias trains with the deep tower."""
        groups: dict[str, list[torch.nn.Parameter]] = {}
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower, None)
            params = [p for p in module.parameters() if p.requires_grad] if module else []
            if params:
                groups[tower] = params
        if not groups:
            raise ValueError("the model has neither a `wide` nor a `deep` submodule to optimize")
        taken = {id(p) for params in groups.values() for p in params}
        rest = [p for p in self.model.parameters() if id(p) not in taken and p.requires_grad]
        groups["wide" if "wide" in groups else "deep"].extend(rest)
        return groups

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        embeddings = [m for m in self.model.modules() if isinstance(m, FieldEmbedding)]
        tables = {id(m.weight) for m in embeddings}
        sparse = {id(m.weight) for m in embeddings if m.sparse}
        optimizers, self.optimizer_towers = [], []
        for tower, params, settings in self._optimizer_groups():
            who = f"optim.{tower if tower in TOWERS else self._rest_tower()}"
            sparse_params = [p for p in params if id(p) in sparse]
            dense_params = [p for p in params if id(p) not in sparse]
            name = settings.get("name")
            if tower == "rest" and name == "sparse_adam":  # no tables in the rest: Adam
                name = settings["name"] = "adam"
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
                self.optimizer_towers.append(tower)
                if dense_params:
                    optimizers.append(
                        build_optimizer(dense_params, {**settings, "name": "adam"}, who)
                    )
                    self.optimizer_towers.append(tower)
            else:
                if settings.get("embedding_l2") and sparse_params:
                    raise ValueError(
                        f"{who}: embedding_l2 does not work with sparse gradients; "
                        f"unset model.{tower}.sparse_min_rows"
                    )
                optimizers.append(build_optimizer(params, settings, who, tables=tables))
                self.optimizer_towers.append(tower)
        schedulers = [build_scheduler(opt, self.optim_cfg.get("scheduler")) for opt in optimizers]
        return optimizers, [s for s in schedulers if s is not None]

    def _rest_tower(self) -> str:
        return "wide" if getattr(self.model, "wide", None) is not None else "deep"

    def _optimizer_groups(self) -> list[tuple[str, list[torch.nn.Parameter], dict[str, Any]]]:
        """(tower, parameters, settings) per optimizer: `tower_parameters`, except that with
        towers that pause or step at a scaled rate (`JointSettings.staged`) the parameters
        outside the towers (the shared bias, the combination weights) are a group of their own
        ("rest", with the settings of the tower they would have joined, unscaled)."""
        groups = self.tower_parameters()
        if not self.joint.staged:
            return [(t, params, dict(self.optim_cfg[t])) for t, params in groups.items()]
        towers = {
            id(p)
            for t in TOWERS
            if getattr(self.model, t, None) is not None
            for p in getattr(self.model, t).parameters()
        }
        out = []
        for tower, params in groups.items():
            settings = dict(self.optim_cfg[tower])
            settings["lr"] = settings["lr"] * self.joint.lr_scale
            out.append((tower, [p for p in params if id(p) in towers], settings))
        rest = [p for params in groups.values() for p in params if id(p) not in towers]
        out = [group for group in out if group[1]]
        if rest:
            out.append(("rest", rest, dict(self.optim_cfg[self._rest_tower()])))
        return out

    def _loss(self, batch: Batch) -> torch.Tensor:
        if self.joint == JointSettings():
            return F.binary_cross_entropy_with_logits(self(batch), batch.label)
        parts = self.model.parts(**batch.inputs())
        return joint_loss(parts.wide, parts.deep, self.model.bias, batch.label, self.joint)

    def paused_towers(self) -> set[str]:
        """The towers that do not step now (`widedeep.training.joint.paused`), kept in eval
        mode so their logit is the fixed function they paused at."""
        towers = paused(self.joint, self.current_epoch, self.tower_stop)
        for tower in TOWERS:  # Lightning restores the modes it saw before each validation
            module = getattr(self.model, tower, None)
            if module is None or tower in getattr(self.model, "frozen", ()):
                continue
            if module.training == (tower in towers):
                module.train(tower not in towers)
        return towers

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        held = self.paused_towers() if self.joint.staged else set()
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            # Stop now: every later step would only spread NaN through both towers' weights.
            step = self.trainer.fit_loop.epoch_loop.total_batch_idx
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}); likely cause: {self._likely_cause(batch)}"
            )
        if self.divergence is not None:
            self._check_divergence(loss, batch, batch_idx)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.optim_cfg.get("grad_clip")
        for opt, tower in zip(optimizers, self.optimizer_towers, strict=True):
            if tower in held:
                continue
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

    def _check_divergence(self, loss: torch.Tensor, batch: Batch, batch_idx: int) -> None:
        watch = self.divergence
        median = watch.diverged(loss.item())
        if median is None:
            return
        step = self.trainer.fit_loop.epoch_loop.total_batch_idx
        raise DivergedLossError(
            f"training loss diverged at step {step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}): its median over the last {watch.window} batches is {median:.3g}, above "
            f"{watch.factor:g} x log 2 = {watch.limit:.3g} (trainer.divergence; predicting any "
            f"constant rate scores at most log 2 = 0.693); likely cause: "
            f"{self._diverging_tower(batch)}"
        )

    @torch.no_grad()
    def _diverging_tower(self, batch: Batch) -> str:
        """The tower with the largest logits (the one blowing up), named with its optimizer."""
        towers = list(self.tower_parameters())
        parts = self.model.parts(**batch.inputs()) if hasattr(self.model, "parts") else None
        if parts is not None and len(towers) > 1:
            towers.sort(key=lambda t: -float(getattr(parts, t).abs().mean()))
        tower = towers[0]
        settings = self.optim_cfg[tower]
        return (
            f"the {tower} tower: optim.{tower}.lr={settings.get('lr')} is too high for "
            f"{settings.get('name')}; lower it or set optim.grad_clip"
        )

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
        if self.tower_stop is not None:
            checkpoint[TOWER_STOP_KEY] = self.tower_stop.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only when resuming training: loading weights for inference must not reseed the caller.
        if self._trainer is not None and self.trainer.state.fn == "fit" and RNG_KEY in checkpoint:
            torch.set_rng_state(checkpoint[RNG_KEY])
        if self.tower_stop is not None and TOWER_STOP_KEY in checkpoint:
            self.tower_stop.load_state_dict(checkpoint[TOWER_STOP_KEY])

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
        if prefix == "val" and self.tower_stop is not None:
            parts = self.model.parts(**batch.inputs())
            logits = parts.logit
            for tower, metric in self.val_tower_auc.items():
                metric.update(torch.sigmoid(getattr(parts, tower)), batch.label.long())
                self.log(f"val/auc_{tower}", metric, on_step=False, on_epoch=True)
        else:
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
        if self.tower_stop is not None:
            self._stop_towers()

    def _stop_towers(self) -> None:
        """Per-tower stopping after a training epoch's validation (not the sanity check, not
        the final evaluation): the AUCs are synced across DDP ranks, so all ranks agree."""
        trainer = self.trainer
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        scores = {
            t: float(m.compute())
            for t, m in self.val_tower_auc.items()
            if m.update_count and getattr(self.model, t, None) is not None
        }
        for tower in self.tower_stop.update(scores, self.current_epoch):
            getattr(self.model, tower).eval()
        for tower in TOWERS:
            stopped = float(tower in self.tower_stop.stopped)
            self.log(f"val/stopped_{tower}", stopped, on_step=False, on_epoch=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_auc, self.test_logloss, "test")

    # -- sizes ---------------------------------------------------------------------------------

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per tower (frozen ones included), those trained (``trainable``: all but a
        frozen tower's), and the wide tower's non-zero weights (its L1 size)."""
        counts = {"total": sum(p.numel() for p in self.model.parameters())}
        counts["trainable"] = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        for tower in ("wide", "deep"):
            module = getattr(self.model, tower, None)
            counts[tower] = sum(p.numel() for p in module.parameters()) if module else 0
        wide = getattr(self.model, "wide", None)
        counts["wide_nonzero"] = wide.num_nonzero() if isinstance(wide, WideTower) else 0
        return counts
