"""model.frozen + model.init_from: one tower of an earlier run, frozen, as a fixed offset."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
import torch
from pytorch_lightning.callbacks import Callback

from widedeep.cli.config import compose_config
from widedeep.training.checkpoint import load_checkpoint, model_from_checkpoint
from widedeep.training.module import WideDeepModule
from widedeep.training.run import ConfigError, train, validate

TINY = [
    "data.generator.n_rows=3000",
    "trainer.max_epochs=2",
    "trainer.patience=5",
    "trainer.progress_bar=false",
    "data.batch_size=256",
    "model.deep.hidden=[32]",
    # Dropout in the source tower: an offset computed in training mode would be noisy.
    "model.deep.dropout=0.3",
]


def _run(out, *overrides, callbacks=()) -> dict:
    return train(compose_config([*TINY, *overrides], str(out)), extra_callbacks=callbacks)


def _tower(path, tower: str) -> dict[str, torch.Tensor]:
    prefix = f"model.{tower}."
    state = load_checkpoint(path, "weights")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(prefix)}


class Modes(Callback):
    """Records (wide training?, deep training?) at every training batch."""

    def __init__(self) -> None:
        self.seen: set[tuple[bool, bool]] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.add((module.model.wide.training, module.model.deep.training))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A deep arm, then wide_deep with the deep tower frozen from its best checkpoint."""
    root = tmp_path_factory.mktemp("stagewise")
    _run(root / "deep", "model=deep", "trainer.logger=none")
    source = root / "deep" / "checkpoints" / "best.ckpt"
    modes = Modes()
    _run(
        root / "stage",
        "model.frozen=deep",
        f"model.init_from={source}",
        "trainer.logger=csv",
        "trainer.log_every_n_steps=1",
        callbacks=[modes],
    )
    return root, source, modes


@pytest.mark.slow
def test_frozen_tower_is_the_source_tower_exactly(runs):
    root, source, modes = runs
    want = _tower(source, "deep")
    for name in ("best.ckpt", "last.ckpt"):
        got = _tower(root / "stage" / "checkpoints" / name, "deep")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    # Eval mode at every training step (no dropout noise in the offset); the wide tower trains.
    assert modes.seen == {(True, False)}
    # The same offset on the same rows: the deep logits of both runs' predictions.
    deep = pl.read_parquet(root / "deep" / "predictions.parquet")
    stage = pl.read_parquet(root / "stage" / "predictions.parquet")
    assert deep.select("split", "row_id").equals(stage.select("split", "row_id"))
    assert stage["deep_logit"].equals(deep["deep_logit"])  # exactly, float for float


@pytest.mark.slow
def test_the_wide_tower_and_bias_learn_on_the_offset(runs):
    root, _, _ = runs
    metrics = json.loads((root / "stage" / "metrics.json").read_text())
    arm = json.loads((root / "deep" / "metrics.json").read_text())
    wide = _tower(root / "stage" / "checkpoints" / "best.ckpt", "wide")
    # WideTower starts at zero weights: any non-zero weight was learned.
    assert sum(int((v != 0).sum()) for v in wide.values()) > 100
    losses = pl.read_csv(root / "stage" / "logs" / "metrics.csv")["train/loss"].drop_nulls()
    first, last = losses.head(5).mean(), losses.tail(5).mean()
    assert last < first - 0.01, (first, last)
    # At step 0 the stagewise model ranks rows exactly as the deep arm does (zero wide weights;
    # a bias changes no AUC), and the best checkpoint is chosen on validation AUC. The margin
    # covers one or two epochs of a 2,400-row wide tower on 300 validation rows, whose AUC
    # moves by about 0.02 from noise alone (its standard error at these sizes).
    assert metrics["val"]["auc"] >= arm["val"]["auc"] - 0.02
    # Only the wide tower and the shared bias have an optimizer.
    state = load_checkpoint(root / "stage" / "checkpoints" / "last.ckpt", "resume")
    (optimizer,) = state["optimizer_states"]
    n_params = sum(len(g["params"]) for g in optimizer["param_groups"])
    assert n_params == len(wide) + 1
    params = metrics["params"]
    assert params["total"] == params["wide"] + params["deep"] + 1
    assert params["trainable"] == params["wide"] + 1
    assert metrics["stagewise"] == {
        "frozen": "deep",
        "init_from": str(runs[1]),
        "source_kind": "deep",
    }


@pytest.mark.slow
def test_checkpoints_of_a_stagewise_run_load_and_resume(runs):
    root, source, _ = runs
    best = root / "stage" / "checkpoints" / "best.ckpt"
    module = WideDeepModule.load_from_checkpoint(best)
    module.train()
    assert module.frozen == "deep" and not module.model.deep.training
    assert not any(p.requires_grad for p in module.model.deep.parameters())
    model, hp = model_from_checkpoint(best)  # inference needs nothing of the freezing
    assert hp["kind"] == "wide_deep" and not model.training
    # Resume in a copy of the run (the other tests read the original), one more epoch.
    shutil.copytree(root / "stage", root / "resumed")
    last = root / "resumed" / "checkpoints" / "last.ckpt"
    _run(
        root / "resumed",
        "model.frozen=deep",
        f"model.init_from={source}",
        "trainer.max_epochs=3",
        "trainer.logger=none",
        f"resume_from={last}",
    )
    got, want = (
        _tower(root / "resumed" / "checkpoints" / "last.ckpt", "deep"),
        _tower(source, "deep"),
    )
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert load_checkpoint(root / "resumed" / "checkpoints" / "last.ckpt", "resume")["epoch"] == 2


@pytest.mark.slow
def test_reverse_order_frozen_wide(tmp_path, runs):
    _run(tmp_path / "wide", "model=wide", "trainer.logger=none")
    source = tmp_path / "wide" / "checkpoints" / "best.ckpt"
    metrics = _run(
        tmp_path / "stage", "model.frozen=wide", f"model.init_from={source}", "trainer.logger=none"
    )
    got, want = (
        _tower(tmp_path / "stage" / "checkpoints" / "best.ckpt", "wide"),
        _tower(source, "wide"),
    )
    assert all(torch.equal(got[k], want[k]) for k in want)
    wide = pl.read_parquet(tmp_path / "wide" / "predictions.parquet")["wide_logit"]
    stage = pl.read_parquet(tmp_path / "stage" / "predictions.parquet")["wide_logit"]
    assert (wide == stage).all()
    assert metrics["params"]["trainable"] == metrics["params"]["deep"] + 1  # bias with deep
    # A joint model is a source too: its wide tower, from the stagewise run of the fixture.
    joint = runs[0] / "stage" / "checkpoints" / "best.ckpt"
    again = _run(
        tmp_path / "from_joint",
        "model.frozen=wide",
        f"model.init_from={joint}",
        "trainer.max_epochs=1",
        "trainer.logger=none",
    )
    assert again["stagewise"]["source_kind"] == "wide_deep"
    got = _tower(tmp_path / "from_joint" / "checkpoints" / "best.ckpt", "wide")
    assert all(torch.equal(got[k], v) for k, v in _tower(joint, "wide").items())


@pytest.mark.slow
def test_config_mistakes_name_the_key():
    for overrides, key in [
        (["model=deep", "model.frozen=deep", "model.init_from=x.ckpt"], "model.frozen"),
        (["model.frozen=both", "model.init_from=x.ckpt"], "model.frozen"),
        (["model.frozen=deep"], "model.init_from"),
        (["model.init_from=x.ckpt"], "model.init_from"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
            validate(compose_config(overrides))
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"model\.frozen='deep': needs model\.kind=wide_deep"):
        WideDeepModule(
            schema={"categorical": [{"name": "a", "cardinality": 3}]},
            kind="deep",
            frozen="deep",
            optim={"deep": {"name": "adam", "lr": 1e-3}},
        )


@pytest.mark.slow
def test_a_wrong_source_fails_in_one_line_naming_init_from(runs, tmp_path):
    root, source, _ = runs
    wide_arm = tmp_path / "wide"
    _run(wide_arm, "model=wide", "trainer.max_epochs=1", "trainer.logger=none")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    cases = [
        # A wide arm has no deep tower (fails before any data is loaded).
        (
            ["model.frozen=deep", f"model.init_from={wide_arm}/checkpoints/best.ckpt"],
            "a 'wide' checkpoint has no deep tower",
        ),
        (["model.frozen=deep", f"model.init_from={tmp_path}/none.ckpt"], "no such file"),
        (["model.frozen=deep", f"model.init_from={garbage}"], "not a checkpoint"),
        # Other data: other cardinalities, so another schema.
        (
            ["model.frozen=deep", f"model.init_from={source}", "data.generator.n_rows=2000"],
            "schema differs",
        ),
        (
            ["model.frozen=deep", f"model.init_from={source}", "model.deep.hidden=[16]"],
            r"model\.deep\.hidden=\[32\], this run \[16\]",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            _run(tmp_path / "bad", *overrides, "trainer.logger=none")
        assert str(err.value).startswith("model.init_from=") and "\n" not in str(err.value)
