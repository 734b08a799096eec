"""The joint objectives in real (tiny) training runs: equality with plain training when they
change nothing, held and stopped towers that do not move, the warm start from two separately
trained runs, checkpoints and resume, and DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest
import torch
from pytorch_lightning.callbacks import Callback

from widedeep.cli.config import compose_config
from widedeep.experiment.runs import key_document
from widedeep.training.checkpoint import load_checkpoint, model_from_checkpoint
from widedeep.training.module import TOWER_STOP_KEY
from widedeep.training.resume import ResumeMismatchError
from widedeep.training.run import ConfigError, train, validate

pytestmark = pytest.mark.slow  # each test trains a few tiny models (seconds each)

TINY = [
    "data.generator.n_rows=3000",
    "trainer.max_epochs=2",
    "trainer.patience=5",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=256",
    "model.deep.hidden=[16]",
    "model.deep.dropout=0.3",
    "optim=paper",  # FTRL on the wide tower, AdaGrad on the deep one
]
# min_delta above any possible AUC gain: each tower stops at its second validation.
STOP_AT_ONCE = "model.tower_stop={patience: 1, min_delta: 1.0}"


def _run(out, *overrides, callbacks=()) -> dict:
    return train(compose_config([*TINY, *overrides], str(out)), extra_callbacks=callbacks)


def _weights(path, prefix: str) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path, "weights")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class EpochWeights(Callback):
    """Each tower's weights and training mode, per epoch (end of epoch / first batch)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
        self.modes: dict[int, dict[str, bool]] = {}
        self.start: dict[str, dict[str, torch.Tensor]] = {}

    def _snapshot(self, module) -> dict[str, dict[str, torch.Tensor]]:
        return {
            t: {k: v.detach().clone() for k, v in getattr(module.model, t).state_dict().items()}
            for t in ("wide", "deep")
        } | {"bias": {"bias": module.model.bias.detach().clone()}}

    def on_train_start(self, trainer, module) -> None:
        self.start = self._snapshot(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 1:  # after the module's own step-0 bookkeeping
            modes = {t: getattr(module.model, t).training for t in ("wide", "deep")}
            self.modes[trainer.current_epoch] = modes

    def on_train_epoch_end(self, trainer, module) -> None:
        self.weights[trainer.current_epoch] = self._snapshot(module)


def test_options_that_change_nothing_train_bit_for_bit_like_the_plain_model(tmp_path):
    # p = 0 through the objectives' loss, and per-tower stopping that never fires (its own
    # optimizer for the bias): the same weights, float for float, as plain joint training.
    _run(tmp_path / "plain")
    _run(tmp_path / "same", "model.tower_dropout=0.0", "model.tower_stop={patience: 100}")
    for name in ("best.ckpt", "last.ckpt"):
        a = _weights(tmp_path / "plain" / "checkpoints" / name, "model.")
        b = _weights(tmp_path / "same" / "checkpoints" / name, "model.")
        assert _same(a, b)


def test_held_tower_does_not_move_and_is_in_eval_mode_then_trains(tmp_path):
    seen = EpochWeights()
    _run(tmp_path / "held", "model.finetune={hold: {deep: 1}}", callbacks=[seen])
    assert _same(seen.weights[0]["deep"], seen.start["deep"])  # held through epoch 0
    assert not _same(seen.weights[0]["wide"], seen.start["wide"])
    assert not _same(seen.weights[0]["bias"], seen.start["bias"])  # the bias trains meanwhile
    assert not _same(seen.weights[1]["deep"], seen.weights[0]["deep"])  # trains from epoch 1
    assert seen.modes[0] == {"wide": True, "deep": False}
    assert seen.modes[1] == {"wide": True, "deep": True}


def test_tower_stop_freezes_towers_and_resumes_with_its_state(tmp_path):
    seen = EpochWeights()
    run = tmp_path / "stop"
    _run(run, STOP_AT_ONCE, "trainer.max_epochs=3", "trainer.logger=csv", callbacks=[seen])
    # Both stop after epoch 1's validation: epoch 2 moves neither tower, only the bias.
    for tower in ("wide", "deep"):
        assert not _same(seen.weights[1][tower], seen.weights[0][tower])
        assert _same(seen.weights[2][tower], seen.weights[1][tower])
    assert not _same(seen.weights[2]["bias"], seen.weights[1]["bias"])
    assert seen.modes[2] == {"wide": False, "deep": False}
    log = pl.read_csv(run / "logs" / "metrics.csv").filter(pl.col("val/auc").is_not_null())
    # Per training epoch (the final evaluation's row has no stopping decision).
    assert log["val/stopped_wide"].drop_nulls().to_list() == [0.0, 1.0, 1.0]
    assert log["val/auc_wide"].null_count() == 0 and log["val/auc_deep"].null_count() == 0
    last = run / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last, "resume")[TOWER_STOP_KEY]["stopped"] == {"wide": 1, "deep": 1}
    # Resumed for one more epoch: still stopped (the state came back from the checkpoint).
    shutil.copytree(run, tmp_path / "resumed")
    again = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    with pytest.raises(ResumeMismatchError, match="model.tower_stop.patience is 1 in the chec"):
        _run(tmp_path / "resumed", "trainer.max_epochs=4", f"resume_from={again}")
    _run(tmp_path / "resumed", STOP_AT_ONCE, "trainer.max_epochs=4", f"resume_from={again}")
    for tower in ("wide", "deep"):
        assert _same(_weights(again, f"model.{tower}."), _weights(last, f"model.{tower}."))


class FirstBatchLogits(Callback):
    """The joint model's logits (and tower shares) on the first training batch, before the
    first step, in eval mode (the members' predictions are eval-mode ones)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == 0 and not hasattr(self, "batch"):
            module.eval()
            with torch.no_grad():
                self.batch, self.parts = batch, module.model.parts(**batch.inputs())
            module.train()


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    _run(root / "wide", "model=wide")
    _run(root / "deep", "model=deep")
    return root


@pytest.mark.parametrize("combine", [True, False])
def test_warm_start_reproduces_the_members_before_the_first_step(tmp_path, members, combine):
    first = FirstBatchLogits()
    hold = "model.finetune={hold: {wide: 1, deep: 1}}"  # only bias (and weights) at first
    init = f"model.init_from={{wide: {members / 'wide'}, deep: {members / 'deep'}}}"
    metrics = _run(tmp_path / "warm", init, f"model.combine={combine}", hold, callbacks=[first])
    inputs = first.batch.inputs()
    member = {}
    for tower in ("wide", "deep"):
        model, _ = model_from_checkpoint(members / tower / "checkpoints" / "best.ckpt")
        with torch.no_grad():
            member[tower] = model.parts(**inputs)
    scale = 0.5 if combine else 1.0
    # Each tower is its member's tower exactly (then scaled by the combination weight).
    assert torch.equal(first.parts.wide, scale * member["wide"].wide)
    assert torch.equal(first.parts.deep, scale * member["deep"].deep)
    # The joint logit: the members' mean logit (ens_mean_logit) with combine, else their sum.
    together = member["wide"].logit + member["deep"].logit
    assert torch.allclose(first.parts.logit, scale * together, atol=1e-5)
    assert set(metrics["stagewise"]["init_from"]) == {"wide", "deep"}
    best = tmp_path / "warm" / "checkpoints" / "best.ckpt"
    model, _ = model_from_checkpoint(best)  # predict/export rebuild the combination weights
    assert (model.scale is not None) == combine


def test_a_resumed_warm_run_with_tower_dropout_and_a_held_tower_is_the_uninterrupted_one(
    tmp_path, members
):
    """Exact resume: the held epochs count from the restored epoch, the masks from the
    restored random state, the weights from the run's checkpoint (not the members)."""
    options = [
        f"model.init_from={{wide: {members / 'wide'}, deep: {members / 'deep'}}}",
        "model.combine=true",
        "model.tower_dropout=0.3",
        "model.finetune={lr_scale: 0.5, hold: {wide: 2}}",
    ]
    _run(tmp_path / "whole", *options, "trainer.max_epochs=3")
    _run(tmp_path / "cut", *options, "trainer.max_epochs=2")
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    _run(tmp_path / "cut", *options, "trainer.max_epochs=3", f"resume_from={last}")
    a = _weights(tmp_path / "whole" / "checkpoints" / "last.ckpt", "model.")
    b = _weights(last, "model.")
    assert _same(a, b)


def test_warm_start_config_mistakes_name_the_key(members):
    init = f"model.init_from={{wide: {members / 'wide'}, deep: {members / 'deep'}}}"
    for overrides, match in [
        ([init, "model.frozen=deep"], "model.frozen takes one checkpoint"),
        ([init, "model=deep"], "model.kind"),
        (["model.init_from={wide: a}"], "model.init_from.deep=None"),
        (["model.init_from={wide: a, deep: b, dep: c}"], "model.init_from.dep: no such key"),
    ]:
        with pytest.raises(ConfigError, match=match):
            validate(compose_config([*TINY, *overrides]))
    swapped = f"model.init_from={{wide: {members / 'deep'}, deep: {members / 'wide'}}}"
    with pytest.raises(ValueError, match="model.init_from.wide=.*a 'deep' run"):
        train(compose_config([*TINY, swapped], "unused"))


def test_run_keys_of_runs_without_the_options_are_those_without_the_keys():
    """The keyed config of a run that uses none of the new options has none of their keys, so
    archived runs of the existing arms keep their keys; a run that uses one is keyed by it."""
    from omegaconf import OmegaConf

    cfg = compose_config(TINY)
    doc = key_document(cfg)["config"]["model"]
    new = ("tower_dropout", "aux_loss", "combine", "finetune", "tower_stop")
    assert not set(new) & set(doc)
    older = OmegaConf.to_container(cfg, resolve=True)
    for key in new:  # the config as composed before these options existed
        del older["model"][key]
    assert key_document(OmegaConf.create(older))["config"] == key_document(cfg)["config"]
    with_p = key_document(compose_config([*TINY, "model.tower_dropout=0.2"]))["config"]
    assert with_p["model"]["tower_dropout"] == 0.2


def test_two_process_ddp_with_the_objectives_matches_one_process(tmp_path):
    """Auxiliary losses, per-tower stopping (synced per-tower AUCs) and the bias's own optimizer
    under 2-process DDP, as one process at the same global batch. (Tower dropout draws its masks
    per rank, so its runs differ by world size; it is run here for completing only.)"""
    shared = [
        *TINY,
        "model.aux_loss=0.5",
        STOP_AT_ONCE,
        "trainer.max_epochs=3",
        "data.batch_size=512",
        "model.deep.dropout=0.0",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)
    for name, extra in (("ddp", []), ("ddp_dropout", ["model.tower_dropout=0.2"])):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "widedeep.cli.train",
                "trainer=ddp",
                *shared,
                *extra,
                f"hydra.run.dir={tmp_path / name}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    single = train(compose_config(shared, output_dir=str(tmp_path / "single")))
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    for split in ("val", "test"):
        assert metrics[split]["auc"] == pytest.approx(single[split]["auc"], abs=1e-3)
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.ckpt", "resume")
    assert state[TOWER_STOP_KEY]["stopped"] == {"wide": 1, "deep": 1}
