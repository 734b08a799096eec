"""``PruningCallback``: stop a tuning trial early when its pruner says it cannot win.

Our own ~30 lines rather than ``optuna_integration.PyTorchLightningPruningCallback``: that one
imports ``lightning.pytorch`` (the unified ``lightning`` package), which this project does not
install; without it the class raises ImportError, and even with it Lightning would refuse it
here, since a ``pytorch_lightning.Trainer`` only takes ``pytorch_lightning.Callback``s.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn


class PruningCallback(pl.Callback):
    """Report ``monitor`` (e.g. ``val/auc``) to an Optuna ``trial`` after every validation epoch,
    as step = epoch, and raise ``optuna.TrialPruned`` when ``trial.should_prune()``.

    The exception leaves ``trainer.fit`` and so `widedeep.training.run.train` before it writes
    metrics.json: a pruned run leaves no result that a later reader could take for a finished
    one. One process only: under DDP the ranks would have to agree before raising.
    """

    def __init__(self, trial: Any, monitor: str = "val/auc") -> None:
        super().__init__()
        self.trial = trial
        self.monitor = monitor

    # on_validation_end, not on_validation_epoch_end: Lightning calls the callbacks' epoch-end
    # hooks before the module's, and the module logs val/auc in its own epoch-end hook.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not the pre-fit sanity check (two batches), nor train()'s validate() after the fit,
        # which would report the last epoch again and could prune a finished run.
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            known = sorted(trainer.callback_metrics)
            raise KeyError(f"pruning: {self.monitor!r} is not logged (logged: {known})")
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            import optuna  # only a tuner, which has Optuna, builds this callback

            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor}={float(value):.4f}")
