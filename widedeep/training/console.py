"""What a training run prints for a person: Lightning's noise filtered and one line per
validation epoch."""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl
from lightning_fabric.utilities.warnings import PossibleUserWarning
from tqdm import tqdm

from widedeep.nn.wide import WideTower

log = logging.getLogger("widedeep")

# (category, message regex) of warnings that are not the user's to act on.
NOISE_WARNINGS = (
    # torch deprecated LeafSpec, which Lightning's own code still uses.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # An epoch shorter than trainer.log_every_n_steps: the loggers still write every that many
    # steps across epochs, and the validation line below reports every epoch regardless.
    (PossibleUserWarning, r"The number of training batches \(\d+\) is smaller than the logging"),
)
# Starts of Lightning's info lines that are not the user's business.
NOISE_INFO = (
    "💡 Tip: For seamless cloud logging",  # an advertisement for Lightning's cloud logger
    "`Trainer(limit_train_batches=1.0)` was configured",  # the default, restated
)
LIGHTNING_INFO = logging.getLogger("pytorch_lightning.utilities.rank_zero")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(NOISE_INFO)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Within: Lightning's and torch's messages that are not the user's business are dropped
    (by category and message: every other warning and info line still shows)."""
    noise = _DropNoise()
    LIGHTNING_INFO.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for category, message in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message, category)
            yield
    finally:
        LIGHTNING_INFO.removeFilter(noise)


VALIDATION_LINE = re.compile(
    r"epoch (\d+)  val/auc ([\d.]+)  val/logloss ([\d.]+)(?:  wide nonzero ([\d,]+))?  "
    r"([\d.]+) s$"
)


class ValidationLine(pl.Callback):
    """After each validation of training (not the sanity check, nor a later validate()), one
    line on the ``widedeep`` logger::

        epoch 3  val/auc 0.7812  val/logloss 0.4650  wide nonzero 1,594  3.2 s

    Epochs count from 0, as in Lightning's bar and metrics.json's ``best_epoch``; the time is
    the epoch's (training and validation); ``wide nonzero`` only for a model with a wide tower.
    With the bar on, the bar steps aside for the line instead of being cut by it.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        if "val/auc" not in metrics:
            return
        parts = [
            f"epoch {trainer.current_epoch}",
            f"val/auc {float(metrics['val/auc']):.4f}",
            f"val/logloss {float(metrics['val/logloss']):.4f}",
        ]
        wide = getattr(getattr(pl_module, "model", None), "wide", None)
        if isinstance(wide, WideTower):
            parts.append(f"wide nonzero {wide.num_nonzero():,}")
        parts.append(f"{time.perf_counter() - self.started:.1f} s")
        with tqdm.external_write_mode():
            log.info("  ".join(parts))
