"""Faults: a run killed with SIGKILL mid-epoch resumes exactly; a diverging run stops with one
line naming the step; checkpoints load with weights_only=True and bad ones fail cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from conftest import random_batch
from omegaconf import OmegaConf

from widedeep import BatchLoader, ColumnarData
from widedeep.training.callbacks import LatestCheckpoint
from widedeep.training.checkpoint import load_checkpoint, model_from_checkpoint, plain, resume_path
from widedeep.training.module import WideDeepModule

# 4,800 training rows in batches of 256: 19 batches per epoch; last.ckpt every 4 batches.
RUN = [
    "data.generator.n_rows=6000",
    "data.batch_size=256",
    "optim=paper",  # FTRL (wide) and AdaGrad (deep): both carry per-coordinate state
    "optim.deep.lr=0.01",  # so that the best validation AUC is the last epoch's (see below)
    # Dropout's masks come from the global RNG (shuffling has its own seed): an exact resume
    # then also needs the RNG state the checkpoint carries (module.RNG_KEY).
    "model.deep.dropout=0.3",
    "optim.scheduler={name: step, step_size: 1, gamma: 0.5}",
    "trainer.max_epochs=2",
    "trainer.patience=10",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "trainer.checkpoint_every_n_steps=4",
]
BATCHES_PER_EPOCH = 19
# Paused (then killed) after batch 26 = epoch 1, batch 7: last.ckpt is from batch 24 (epoch 1,
# 5 batches done), so batches 25 and 26 were trained, lost, and must be redone identically.
KILL_AFTER, SAVED_AT = 26, 24
TOLERANCE = 1e-6  # same ops in the same order on the same machine: equal to float rounding

# The CLI, with a module hook that stops the process after a given batch (after that batch's
# checkpoint, if any, is written: Lightning calls callbacks before the module's hook) and
# waits there for the test's SIGKILL. Nothing is flushed or torn down: a real hard kill.
PAUSING_CLI = """
import os, sys, time
from pathlib import Path
import widedeep.training.module as lit
from widedeep.cli.train import main

at, marker = int(os.environ["PAUSE_AFTER"]), Path(os.environ["PAUSE_MARKER"])

def on_train_batch_end(self, outputs, batch, batch_idx):
    if self.trainer.fit_loop.epoch_loop.total_batch_idx + 1 == at:
        marker.write_text("paused")
        time.sleep(600)

lit.WideDeepModule.on_train_batch_end = on_train_batch_end
sys.argv = ["widedeep-train", *sys.argv[1:]]
main()
"""

# The CLI, recording the (epoch, batch) of every batch it trains into RECORD_BATCHES (one line
# each): what the resumed process really trained, not only how it ended.
RECORDING_CLI = """
import os, sys
from pathlib import Path
import widedeep.training.module as lit
from widedeep.cli.train import main

record = Path(os.environ["RECORD_BATCHES"])

def on_train_batch_start(self, batch, batch_idx):
    with record.open("a") as f:
        f.write(f"{self.current_epoch} {batch_idx}\\n")

lit.WideDeepModule.on_train_batch_start = on_train_batch_start
sys.argv = ["widedeep-train", *sys.argv[1:]]
main()
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WIDEDEEP_DEBUG": "", **extra}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "widedeep.cli.train", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("widedeep-train: error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts / lists / tensors equal to TOLERANCE (optimizer and model states)."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=0, msg=where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted run, and the same run SIGKILLed mid-epoch then resumed in its folder."""
    root = tmp_path_factory.mktemp("faults")
    full, killed = root / "full", root / "killed"
    done = _cli(*RUN, f"hydra.run.dir={full}", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]

    marker = root / "paused"
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSING_CLI, *RUN, f"hydra.run.dir={killed}"],
        cwd=root,
        env=_env(PAUSE_AFTER=str(KILL_AFTER), PAUSE_MARKER=str(marker)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600  # a hang guard: as long as `_cli` gives a whole run
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert not (killed / "metrics.json").exists()
    # Kept for the optimizer-state test: resuming overwrites last.ckpt.
    saved = root / "saved.ckpt"
    saved.write_bytes((killed / "checkpoints/last.ckpt").read_bytes())

    trained = root / "resumed-batches.txt"
    resumed = subprocess.run(
        [
            sys.executable,
            "-c",
            RECORDING_CLI,
            *RUN,
            f"hydra.run.dir={killed}",
            f"resume_from={killed}/checkpoints/last.ckpt",
        ],
        cwd=root,
        env=_env(RECORD_BATCHES=str(trained)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"full": full, "killed": killed, "saved": saved, "trained": trained}


@pytest.mark.slow
def test_the_kill_left_a_mid_epoch_checkpoint(runs):
    state = load_checkpoint(runs["saved"], "resume")
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    assert progress["total"]["processed"] == SAVED_AT
    assert 0 < progress["current"]["processed"] < BATCHES_PER_EPOCH  # mid-epoch
    # The loader's position (BatchLoader.state_dict) rides along in the loop state.
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader == [{"epoch": 1, "batch": SAVED_AT - BATCHES_PER_EPOCH}]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(runs):
    full = json.loads((runs["full"] / "metrics.json").read_text())
    resumed = json.loads((runs["killed"] / "metrics.json").read_text())
    # Metrics are the best epoch's: the resumed one, or this comparison would prove nothing.
    assert full["best_epoch"] == 1
    for split in ("val", "test"):
        for metric in ("auc", "logloss"):
            assert resumed[split][metric] == pytest.approx(full[split][metric], abs=TOLERANCE)
    assert resumed["best_epoch"] == full["best_epoch"]
    # The resumed process started at the checkpoint (epoch 1, batch 5) and trained the rest of
    # that epoch only: had it ignored resume_from, it would have retrained both epochs from
    # scratch and (training being deterministic) still ended like the uninterrupted run.
    trained = [
        tuple(map(int, line.split())) for line in runs["trained"].read_text().split("\n") if line
    ]
    done = SAVED_AT - BATCHES_PER_EPOCH
    assert trained == [(1, b) for b in range(done, BATCHES_PER_EPOCH)]
    a = load_checkpoint(runs["full"] / "checkpoints/last.ckpt", "resume")
    b = load_checkpoint(runs["killed"] / "checkpoints/last.ckpt", "resume")
    assert a["global_step"] == b["global_step"]
    _assert_same(a["state_dict"], b["state_dict"], "state_dict")
    _assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    _assert_same(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")


class _Stop(Exception):
    """Raised by `_FirstResumedBatch` once it has seen what it came for."""


class _FirstResumedBatch(pl.Callback):
    """Records the optimizers' states and the batch when training resumes, then stops."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.optimizer_states = [opt.state_dict() for opt in trainer.optimizers]
        self.batch, self.batch_idx = batch, batch_idx
        raise _Stop


@pytest.mark.slow
def test_resume_restores_both_optimizers_and_the_data_order(runs):
    from widedeep.data.loader import EpochPermutation
    from widedeep.training.datamodule import WideDeepDataModule

    saved = load_checkpoint(runs["saved"], "resume")
    cfg = OmegaConf.load(runs["full"] / "config.yaml")
    dm = WideDeepDataModule(OmegaConf.to_container(cfg.data), 256, 4096, cfg.seed)
    probe = _FirstResumedBatch()
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[probe],
    )
    with pytest.raises(_Stop):
        trainer.fit(
            WideDeepModule(**saved["hyper_parameters"]),
            datamodule=dm,
            ckpt_path=runs["saved"],
            weights_only=True,
        )
    assert len(probe.optimizer_states) == 2  # FTRL for the wide tower, AdaGrad for the deep one
    _assert_same(probe.optimizer_states, saved["optimizer_states"], "optimizer_states")
    assert all(state["state"] for state in probe.optimizer_states)  # both have state
    # The next batch is the one after the saved position in epoch 1's permutation.
    done = SAVED_AT - BATCHES_PER_EPOCH
    assert probe.batch_idx == done
    order = EpochPermutation(len(dm.data.splits["train"]), True, cfg.seed)
    order.set_epoch(1)
    expected = order.indices()[done * 256 : (done + 1) * 256]
    assert torch.equal(probe.batch.row_id, expected)


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line_naming_the_step(tmp_path):
    result = _cli(
        "data.generator.n_rows=3000",
        "data.batch_size=256",
        "optim.deep.lr=1e30",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.logger=none",
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    line = _error_line(result.stderr)
    assert "training loss is nan at step 1 (epoch 0, batch 1)" in line
    assert "optim.deep.lr=1e+30" in line


def test_an_infinite_loss_stops_training_at_its_step(schema):
    """+inf logits on rows all labelled 0 make the loss +inf, not NaN: caught as well, in the
    step that produced it, before any optimizer step spreads it."""
    import math

    from widedeep.training.module import NonFiniteLossError

    module = WideDeepModule(
        schema.to_dict(),
        deep={"embedding_dim": 4, "hidden": (8,)},
        optim={"wide": {"name": "adam", "lr": 0.01}, "deep": {"name": "adam", "lr": 0.01}},
    )
    rows = random_batch(schema, 96)
    data = ColumnarData(
        dense=rows.dense,
        categorical=rows.categorical,
        crosses=rows.crosses,
        label=torch.zeros_like(rows.label),
        bags=[(v, torch.cat([o, torch.tensor([len(v)])])) for v, o in rows.bags],
    )

    class Overflow(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 1:  # the second batch: the first trains normally
                with torch.no_grad():
                    pl_module.model.bias.fill_(math.inf)

    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Overflow()],
    )
    weights = [p.detach().clone() for p in module.model.deep.parameters()]
    with pytest.raises(
        NonFiniteLossError,
        match=r"training loss is inf at step 1 \(epoch 0, "
        r"batch 1\)",
    ):
        trainer.fit(module, train_dataloaders=BatchLoader(data, 32))
    # The step stopped before its backward pass: the deep tower's weights are those after the
    # first batch, all finite.
    assert all(torch.isfinite(p).all() for p in module.model.deep.parameters())
    assert any(
        not torch.equal(a, b) for a, b in zip(weights, module.model.deep.parameters(), strict=True)
    )


# -- checkpoint safety (no training) -----------------------------------------------------------


class _Payload:
    """Unpickling this runs code: what an untrusted checkpoint can smuggle in."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def good_checkpoint(tmp_path, schema) -> Path:
    """A checkpoint as widedeep-train writes it, from an untrained module (no training)."""
    module = WideDeepModule(
        schema.to_dict(),
        deep={"embedding_dim": 4, "hidden": (8,)},
        optim={"wide": {"name": "adam", "lr": 0.01}, "deep": {"name": "adam", "lr": 0.01}},
    )
    path = tmp_path / "good.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def test_a_checkpoint_loads_for_inference_with_weights_only(good_checkpoint, schema):
    model, hp = model_from_checkpoint(good_checkpoint)
    module = WideDeepModule(**hp)
    module.load_state_dict(torch.load(good_checkpoint, weights_only=True)["state_dict"])
    batch = random_batch(schema, 16)
    torch.testing.assert_close(model(**batch.inputs()), module.eval()(batch))


def test_an_untrusted_checkpoint_is_refused_without_running_it(tmp_path, good_checkpoint):
    marker = tmp_path / "pwned"
    state = torch.load(good_checkpoint, weights_only=True)
    path = tmp_path / "untrusted.ckpt"
    torch.save({**state, "extra": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="refused") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated (a kill during a copy)
        lambda b: bytes(range(256)) * 8,  # random bytes
        lambda b: b"",  # empty
        lambda b: b"not a checkpoint\n",
    ],
    ids=["truncated", "random", "empty", "text"],
)
def test_a_corrupted_checkpoint_fails_in_one_line_naming_the_file(
    tmp_path, good_checkpoint, damage
):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(damage(good_checkpoint.read_bytes()))
    with pytest.raises(ValueError, match="corrupted or not a checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_missing_keys_are_named(tmp_path, good_checkpoint):
    with pytest.raises(ValueError, match="no such file"):
        load_checkpoint(tmp_path / "nope.ckpt")
    # An inference checkpoint is not enough to resume: no optimizer or loop state.
    with pytest.raises(ValueError, match=r"optimizer_states.*needed for resume"):
        resume_path(good_checkpoint)
    assert resume_path(None) is None


def test_resuming_from_a_bad_file_fails_before_loading_data(tmp_path):
    from widedeep.cli.config import compose_config
    from widedeep.training.run import train

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"\x00" * 100)
    cfg = compose_config([f"resume_from={bad}"], output_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=f"checkpoint {bad}: corrupted"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # failed before writing anything


@pytest.mark.slow
def test_the_cli_reports_a_bad_resume_file_in_one_line(tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(os.urandom(4096))
    result = _cli(f"resume_from={bad}", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert result.returncode == 2
    assert str(bad) in _error_line(result.stderr)


def test_hyper_parameters_are_stored_as_plain_types(schema):
    optim = OmegaConf.create({"wide": {"name": "adam", "lr": 0.01}, "deep": {"name": "adam"}})
    optim.deep.lr = 0.01
    module = WideDeepModule(schema.to_dict(), deep={"hidden": (8, 4)}, optim=optim)

    def check(value: Any) -> None:
        assert isinstance(value, (dict, list, str, int, float, bool, type(None))), type(value)
        items = value.values() if isinstance(value, dict) else value
        for item in items if isinstance(value, (dict, list)) else ():
            check(item)

    check(dict(module.hparams))
    assert module.hparams["deep"]["hidden"] == [8, 4]
    with pytest.raises(TypeError, match=r"hyper-parameters\.root: PosixPath"):
        plain({"root": Path("/data")})


def test_batch_loader_state_resumes_mid_epoch():
    n = 50
    data = ColumnarData(
        dense=torch.arange(n, dtype=torch.float32)[:, None],
        categorical=torch.zeros(n, 0, dtype=torch.long),
        crosses=torch.zeros(n, 0, dtype=torch.long),
        label=torch.zeros(n),
    )

    def rows(loader: BatchLoader) -> list[list[int]]:
        return [batch.row_id.tolist() for batch in loader]

    loader = BatchLoader(data, 8, shuffle=True, seed=3)
    loader.sampler.set_epoch(2)
    whole = rows(loader)
    it = iter(loader)
    first = [next(it).row_id.tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state == {"epoch": 2, "batch": 3}

    fresh = BatchLoader(data, 8, shuffle=True, seed=3)
    fresh.load_state_dict(state)
    assert first + rows(fresh) == whole
    # Only that one iteration resumes: the next one is the whole epoch again.
    assert rows(fresh) == whole
    # A position in another epoch than the one starting does not skip anything.
    other = BatchLoader(data, 8, shuffle=True, seed=3)
    other.load_state_dict(state)
    other.sampler.set_epoch(3)
    assert len(rows(other)) == len(loader)


def test_checkpoint_interval_must_be_a_positive_int(tmp_path):
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="checkpoint_every_n_steps"):
            LatestCheckpoint(tmp_path, bad)
    assert LatestCheckpoint(tmp_path, None).every_n_steps is None
