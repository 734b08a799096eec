"""Lightning callbacks: the latest-state checkpoint (also written on SIGTERM), SIGTERM under DDP,
and LR on plateau."""

from __future__ import annotations

import logging
import math
import signal
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger("widedeep")


class LatestCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``: the latest state, at the end of every epoch (whether or not the
    validation AUC improved) and, with ``every_n_steps``, every that many training batches.

    A run killed mid-epoch then loses at most ``every_n_steps`` batches: resuming from the file
    restores the weights, both towers' optimizers, the schedulers, the loops and the data order
    (`BatchLoader.state_dict`). Steps count training batches over all epochs, not optimizer
    steps (Lightning's ``global_step`` counts one per tower per batch here). Every save is atomic
    (`widedeep.training.checkpoint_io`), so a kill during a save leaves the previous file intact.

    On SIGTERM (a scheduler's preemption) Lightning stops after the current batch; the file is
    written then, at the same point of the loop as the periodic saves (or, when the signal came
    after that point in the batch, from `on_exception`), so a resumed run continues exactly.
    ``saved_at``: the training batches done (over all epochs) at this process's latest save.
    """

    def __init__(self, dirpath: Any, every_n_steps: int | None = None) -> None:
        valid = isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool)
        if every_n_steps is not None and not (valid and every_n_steps >= 1):
            raise ValueError(
                f"trainer.checkpoint_every_n_steps={every_n_steps!r}: expected an int >= 1 or null"
            )
        super().__init__(dirpath=dirpath, filename="last", enable_version_counter=False)
        self.every_n_steps = every_n_steps
        self.saved_at: int | None = None

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.format_checkpoint_name({}), weights_only=False)
        self.saved_at = trainer.fit_loop.epoch_loop.total_batch_idx + 1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)
        done = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        periodic = bool(self.every_n_steps) and done % self.every_n_steps == 0
        # An epoch's last batch is followed by its validation: on SIGTERM, on_exception saves
        # after it (a save here would resume past an epoch that was never validated).
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        # Under DDP a rank's own flag is not yet every rank's (a save is a collective): the
        # save waits for the loop's broadcast of rank 0's flag, then happens in on_exception.
        alone = trainer.world_size == 1
        if periodic or (trainer.received_sigterm and alone and not last_batch):
            self._save(trainer)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)  # Lightning's own saves (epoch ends)
        self.saved_at = trainer.fit_loop.epoch_loop.total_batch_idx + 1

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        done = trainer.fit_loop.epoch_loop.total_batch_idx + 1
        # Mid-validation, the loop state cannot be resumed from: the previous file stands.
        interrupted = (
            isinstance(exception, SIGTERMException)
            and trainer.state.fn == "fit"  # not the evaluations after training (best weights)
            and not trainer.sanity_checking
        )
        if interrupted and not trainer.validating and self.saved_at != done:
            self._save(trainer)


class DistributedSigterm(pl.Callback):
    """SIGTERM under DDP without a deadlock: every rank stops after the same batch.

    Lightning's SIGTERM handler (2.6) broadcasts from inside the signal handler, so rank 0
    waits in a broadcast the other ranks (in the backward's all-reduce) never join; and its
    loops raise on a rank's own flag at the end of a batch, so a rank whose signal came a batch
    earlier than another's goes to save (a barrier) while the other trains on (an all-reduce).
    Here the handler only notes the signal (and forwards it to the ranks Lightning launched, as
    Lightning does); at the start of every training batch the ranks all-reduce their notes, and
    only then is Lightning's flag set, on every rank at once: all stop at the end of that batch
    (or, on an epoch's last batch, of the next epoch's first, so that the epoch is validated).
    """

    def __init__(self) -> None:
        self.noticed = False

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int
    ) -> None:
        if trainer.world_size == 1:
            return
        import torch
        import torch.distributed as dist

        flag = torch.tensor([int(self.noticed)], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank, every batch: matched
        # Not on an epoch's last batch: stopped at its end, the epoch would never be validated
        # (a resumed run skips the validation of an epoch saved at its last batch); the next
        # epoch's first batch stops instead, after the validation.
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if flag.item() and not last:
            trainer._signal_connector.received_sigterm = True  # noqa: SLF001

    def _install(self, trainer: pl.Trainer) -> None:
        if trainer.world_size == 1 or getattr(signal.getsignal(signal.SIGTERM), "_quiet", False):
            return
        connector = trainer._signal_connector  # noqa: SLF001 - the flag the loops read
        lightnings = type(connector)._sigterm_notifier_fn
        previous = signal.getsignal(signal.SIGTERM)
        # Keep every other handler of Lightning's composition (SLURM's, the user's).
        others = [
            h
            for h in getattr(previous, "signal_handlers", [previous])
            if callable(h) and getattr(h, "__func__", None) is not lightnings
        ]

        def notice(signum: int, frame: Any) -> None:
            log.info("rank %d: received SIGTERM: stopping after a batch", trainer.global_rank)
            if not self.noticed and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)
            self.noticed = True
            for handler in others:
                handler(signum, frame)

        notice._quiet = True  # type: ignore[attr-defined]
        signal.signal(signal.SIGTERM, notice)


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
