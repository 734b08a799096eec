"""train(cfg) on composed real configs: outputs, checkpoints, multirun and clear config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from widedeep.train import ConfigError, compose_config, train, validate

TINY = [
    "data.generator.n_rows=6000",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=512",
]


@pytest.mark.parametrize("model", ["wide", "deep", "wide_deep"])
@pytest.mark.parametrize("optim", ["adam", "paper"])
def test_every_model_and_optim_config_composes(model, optim):
    cfg = compose_config([f"model={model}", f"optim={optim}"])
    validate(cfg)
    assert cfg.model.kind == model
    # All arms share one tower definition: the fairness rule of the comparison.
    assert cfg.model.deep == compose_config(["model=wide_deep"]).model.deep


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
    assert saved["test"]["auc"] == pytest.approx(metrics["test"]["auc"])
    assert {"auc", "logloss"} <= saved["val"].keys()
    assert saved["params"]["total"] == saved["params"]["wide"] + saved["params"]["deep"] + 1
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    assert preds.columns == ["row_id", "label", "wide_logit", "deep_logit", "logit", "split"]
    rows = saved["rows"]
    assert preds.filter(pl.col("split") == "test").height == rows["test"]
    assert preds.filter(pl.col("split") == "valid").height == rows["valid"]
    # The saved parts add up to the final logit (plus the one shared bias).
    bias = (preds["logit"] - preds["wide_logit"] - preds["deep_logit"]).to_numpy()
    assert bias.std() < 1e-5

    # The checkpoint alone rebuilds the model, with the same scores.
    from widedeep.lit import WideDeepModule

    module = WideDeepModule.load_from_checkpoint(tmp_path / "checkpoints/best.ckpt")
    from widedeep.pipeline import load_data
    from widedeep.predict import predict_split

    data = load_data(dict(cfg.data))
    again = predict_split(module.model, data.splits["test"])
    test_preds = preds.filter(pl.col("split") == "test")
    torch.testing.assert_close(
        torch.tensor(again["logit"].to_numpy()), torch.tensor(test_preds["logit"].to_numpy())
    )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WIDEDEEP_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "widedeep.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
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


def _experiments() -> list[str]:
    from pathlib import Path

    import widedeep

    folder = Path(widedeep.__file__).parent / "conf" / "experiment"
    return sorted(p.stem for p in folder.glob("*.yaml"))


@pytest.mark.parametrize("experiment", _experiments())
def test_every_experiment_composes_and_validates(experiment):
    from hydra import compose, initialize_config_module

    name = "bench" if experiment.startswith(("jve", "joint_vs")) else "train"
    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(config_name=name, overrides=[f"experiment={experiment}"])
    validate(cfg)
    if name == "bench":
        from widedeep.bench import plan

        assert plan(cfg.bench), experiment
