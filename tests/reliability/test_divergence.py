"""A diverging run stops with one line naming the tower and its learning rate (exit 2); healthy
runs, on synthetic and real data and with a high but workable learning rate, stay far from the
rule's limit (issue 17, docs/faults.md "A diverging run")."""

from __future__ import annotations

import math
import os
import statistics
from collections import deque
from pathlib import Path

import pytest
import pytorch_lightning as pl

from widedeep.cli.config import compose_config
from widedeep.training.run import ConfigError, train, validate

# 4,800 training rows, 19 batches of 256 per epoch: the 20-batch window fills in epoch 1.
QUIET = ["trainer.max_epochs=2", "trainer.progress_bar=false", "trainer.logger=none"]
RUN = ["data.generator.n_rows=6000", "data.batch_size=256", *QUIET]


class _Peak(pl.Callback):
    """The highest median training loss over any `window` consecutive batches, in log 2s: the
    quantity the divergence rule compares with trainer.divergence.factor."""

    def __init__(self, window: int) -> None:
        self.losses: deque[float] = deque(maxlen=window)
        self.peak = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        if len(self.losses) == self.losses.maxlen:
            self.peak = max(self.peak, statistics.median(self.losses) / math.log(2))


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_naming_the_tower_and_its_lr(tmp_path, capsys):
    from widedeep.cli.train import _hydra_entry

    cfg = compose_config([*RUN, "optim.wide.lr=1e30"], output_dir=str(tmp_path))
    with pytest.raises(SystemExit) as caught:
        _hydra_entry(cfg)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("widedeep-train: error: training loss diverged at step ")
    assert "the wide tower: optim.wide.lr=1e+30 is too high for adam" in lines[0]
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        RUN,  # the defaults: adam on both towers
        [*RUN, "optim=paper"],  # FTRL + AdaGrad
        [*RUN, "optim.wide.lr=0.5", "optim.deep.lr=0.05"],  # 500x and 50x adam's: still learns
        ["data=criteo", "data.batch_size=256", *QUIET],  # real data: Criteo's first 10k rows
    ],
    ids=["adam", "paper", "high-lr", "criteo"],
)
def test_healthy_runs_stay_far_below_the_divergence_limit(tmp_path, overrides):
    cfg = compose_config(overrides, output_dir=str(tmp_path))
    if cfg.data.name == "criteo":
        criteo = Path(os.environ.get("WIDEDEEP_DATA_DIR") or "data") / cfg.data.files.train
        if not criteo.is_file():
            pytest.skip(f"real data not found: {criteo} (set $WIDEDEEP_DATA_DIR)")
    probe = _Peak(cfg.trainer.divergence.window)
    metrics = train(cfg, [probe])  # the rule is on (the default): it must not fire
    assert metrics["test"]["auc"] > 0.55  # it learned
    # The limit is `factor` log 2s; healthy runs peak near 1 (the untrained model's log 2).
    assert probe.peak < cfg.trainer.divergence.factor / 2


@pytest.mark.slow
def test_the_rule_is_configurable_and_checked():
    assert compose_config([]).trainer.divergence.factor is not None  # on by default
    validate(compose_config(["trainer.divergence.factor=null"]))  # off
    with pytest.raises(ConfigError, match=r"trainer\.divergence\.factor"):
        validate(compose_config(["trainer.divergence.factor=0.5"]))
    with pytest.raises(ConfigError, match=r"trainer\.divergence\.window"):
        validate(compose_config(["trainer.divergence.window=0"]))
