"""train(cfg) on composed real configs: outputs, checkpoints, multirun and clear config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.metrics import log_loss, roc_auc_score

from widedeep.cli.config import compose_config
from widedeep.training.run import ConfigError, train, validate

CONF = Path(__file__).resolve().parents[1] / "widedeep" / "conf"
TINY = [
    "data.generator.n_rows=6000",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=512",
]


@pytest.mark.fast_first
@pytest.mark.parametrize("model", ["wide", "deep", "wide_deep"])
@pytest.mark.parametrize("optim", ["adam", "paper"])
def test_every_model_and_optim_config_composes(model, optim):
    cfg = compose_config([f"model={model}", f"optim={optim}"])
    validate(cfg)
    assert cfg.model.kind == model
    # All arms share one tower definition (the fairness rule of the comparison): the towers of
    # conf/model/wide_deep.yaml itself, read as a file, not composed the same way again.
    towers = OmegaConf.load(CONF / "model" / "wide_deep.yaml")
    for tower in ("wide", "deep"):
        for key, value in towers[tower].items():
            assert cfg.model[tower][key] == value, (tower, key)


@pytest.mark.slow
def test_validation_names_the_bad_key():
    for override, key in [
        ("data.batch_size=0", "data.batch_size"),
        ("model.deep.hidden=[64,-1]", "model.deep.hidden"),
        ("trainer.max_epochs=1.5", "trainer.max_epochs"),
        ("model.kind=huge", "model.kind"),
        ("trainer.logger=wandb", "trainer.logger"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(compose_config([override]))


@pytest.mark.slow
def test_train_writes_every_output(tmp_path):
    cfg = compose_config([*TINY, "model=wide_deep"], output_dir=str(tmp_path))
    metrics = train(cfg)
    for name in (
        "config.yaml",
        "metrics.json",
        "predictions.parquet",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    # The metrics (torchmetrics, in the module) against sklearn on the saved predictions; the
    # returned dict is the file's.
    for split, name in (("test", "test"), ("valid", "val")):
        rows = preds.filter(pl.col("split") == split)
        label, logit = rows["label"].to_numpy(), rows["logit"].to_numpy()
        assert saved[name]["auc"] == pytest.approx(roc_auc_score(label, logit), abs=1e-6)
        prob = 1 / (1 + np.exp(-logit.astype(np.float64)))
        assert saved[name]["logloss"] == pytest.approx(log_loss(label, prob), abs=1e-5)
    assert saved == json.loads(json.dumps(metrics))
    assert {"auc", "logloss"} <= saved["val"].keys()
    assert saved["params"]["total"] == saved["params"]["wide"] + saved["params"]["deep"] + 1
    assert preds.columns == ["row_id", "label", "wide_logit", "deep_logit", "logit", "split"]
    rows = saved["rows"]
    assert preds.filter(pl.col("split") == "test").height == rows["test"]
    assert preds.filter(pl.col("split") == "valid").height == rows["valid"]
    # The saved parts add up to the final logit (plus the one shared bias).
    bias = (preds["logit"] - preds["wide_logit"] - preds["deep_logit"]).to_numpy()
    assert bias.std() < 1e-5

    # The checkpoint alone rebuilds the model, with the saved scores: row by row, each row
    # gathered alone (not through predict_split's batches and row numbering).
    from widedeep.data.pipeline import load_data
    from widedeep.training.module import WideDeepModule

    model = WideDeepModule.load_from_checkpoint(tmp_path / "checkpoints/best.ckpt").model.eval()
    test = load_data(dict(cfg.data)).splits["test"]
    saved_test = preds.filter(pl.col("split") == "test")
    rows = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:40]
    with torch.no_grad():
        for i in rows.tolist():
            parts = model.parts(**test.take(torch.tensor([i])).inputs())
            row = saved_test.filter(pl.col("row_id") == i).row(0, named=True)
            assert row["label"] == int(test.label[i])
            for name, value in (
                ("wide_logit", parts.wide),
                ("deep_logit", parts.deep),
                ("logit", parts.logit),
            ):
                assert row[name] == pytest.approx(float(value), abs=1e-5), (i, name)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WIDEDEEP_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "widedeep.cli.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        # Against a hang only: the multirun trains 4 models (~30 s, several times that on a
        # busy shared machine).
        timeout=1200,
    )


@pytest.mark.slow
def test_config_mistakes_end_in_a_short_message(tmp_path):
    wrong_type = _cli("data.batch_size=abc", cwd=tmp_path)
    assert wrong_type.returncode != 0
    assert "data.batch_size" in wrong_type.stderr and "Traceback" not in wrong_type.stderr
    unknown = _cli("trainer.no_such_option=1", cwd=tmp_path)
    assert unknown.returncode != 0
    assert "no_such_option" in unknown.stderr and "Traceback" not in unknown.stderr
    bad_group = _cli("model=huge", cwd=tmp_path)
    assert bad_group.returncode != 0 and "Traceback" not in bad_group.stderr
    assert len(bad_group.stderr.strip().splitlines()) < 15


@pytest.mark.slow
def test_multirun_trains_every_combination(tmp_path):
    result = _cli(
        "-m",
        *TINY,
        "model=wide,deep",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = sorted(tmp_path.glob("sweep/*/metrics.json"))
    kinds = sorted(
        (json.loads(p.read_text())["kind"], json.loads(p.read_text())["seed"]) for p in found
    )
    assert kinds == [("deep", 0), ("deep", 1), ("wide", 0), ("wide", 1)]


def test_reduce_lr_on_plateau_decays_after_each_non_improving_validation():
    from types import SimpleNamespace

    from widedeep.training.callbacks import ReduceLROnPlateau

    wide = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    deep = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"), sanity_checking=False, optimizers=[wide, deep]
    )
    plateau = ReduceLROnPlateau("val/auc", factor=0.5, min_lr=2e-4)
    for auc in (0.70, 0.72, 0.71, 0.72, 0.73, 0.60):
        trainer.callback_metrics = {"val/auc": torch.tensor(auc)}
        plateau.on_validation_end(trainer, None)
    # 0.71 and 0.72 (not above the best, 0.72) and 0.60 did not improve: three halvings,
    # the deep rate stopping at min_lr.
    assert wide.param_groups[0]["lr"] == pytest.approx(0.1 / 8)
    assert deep.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert plateau.state_dict() == {"best": pytest.approx(0.73)}
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau("val/auc", factor=1.5)


@pytest.mark.slow
def test_monitor_and_plateau_in_a_run(tmp_path):
    from widedeep.training.checkpoint import load_checkpoint

    overrides = [
        *TINY,
        "trainer.max_epochs=3",
        "trainer.patience=5",
        "trainer.monitor=auc_minus_logloss",
        # min_delta 1: no validation after the first counts as an improvement, so the
        # schedule is known: one halving per later epoch.
        "trainer.reduce_lr_on_plateau={factor: 0.5, min_delta: 1.0}",
        "trainer.logger=csv",
        "optim=adam",
    ]
    cfg = compose_config(overrides, output_dir=str(tmp_path))
    train(cfg)
    log = pl.read_csv(tmp_path / "logs" / "metrics.csv")
    rows = log.filter(pl.col("val/auc_minus_logloss").is_not_null())
    assert rows.height >= 3
    expected = (rows["val/auc"] - rows["val/logloss"]).to_numpy()
    assert rows["val/auc_minus_logloss"].to_numpy() == pytest.approx(expected, abs=1e-6)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", "resume")
    lrs = [g["lr"] for opt in state["optimizer_states"] for g in opt["param_groups"]]
    assert len(lrs) == 2 and lrs == pytest.approx([1e-3 * 0.5**2] * 2)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.ckpt", "resume")
    checkpoints = [v for k, v in best["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert {c["monitor"] for c in checkpoints} >= {"val/auc_minus_logloss"}


@pytest.mark.slow
def test_training_loss_is_logged_on_the_loggers_steps_only(tmp_path, monkeypatch):
    from widedeep.training.module import WideDeepModule

    calls = {}
    log = WideDeepModule.log

    def counting_log(self, name, *args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return log(self, name, *args, **kwargs)

    monkeypatch.setattr(WideDeepModule, "log", counting_log)
    written, logged = {}, {}
    for every in (1, 3):
        calls.clear()
        out = tmp_path / str(every)
        overrides = [*TINY, "trainer.max_epochs=2", "trainer.logger=csv", "optim=adam"]
        train(compose_config([*overrides, f"trainer.log_every_n_steps={every}"], str(out)))
        losses = pl.read_csv(out / "logs" / "metrics.csv")["train/loss"].drop_nulls()
        assert losses.is_finite().all()
        written[every], logged[every] = losses.len(), calls["train/loss"]
    # n=1: every batch of both epochs; n=3: every third, and self.log is skipped in between
    # (it costs Lightning bookkeeping on every call), with nothing the loggers write lost.
    assert written[1] == logged[1] > 6
    assert written[3] == logged[3] == written[1] // 3


@pytest.mark.slow
def test_bad_plateau_and_monitor_settings_are_named():
    for override, key in [
        ("trainer.monitor=loss", "trainer.monitor"),
        ("trainer.reduce_lr_on_plateau={factor: 2}", "trainer.reduce_lr_on_plateau.factor"),
        ("trainer.reduce_lr_on_plateau={patience: 1}", "trainer.reduce_lr_on_plateau"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(compose_config([override]))
