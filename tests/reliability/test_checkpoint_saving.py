"""Checkpoint saves are atomic on any filesystem (issue 17, docs/faults.md): a SIGKILL, a full
disk or an unwritable folder never leaves a truncated checkpoint, and the error names the path
and the reason in one line."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from _save_util import (
    PAUSE_IN_SAVE,
    TINY,
    cli,
    immutable,
    start,
    stop,
    tmpfs,
    wait_for,
)

from widedeep.cli.config import compose_config
from widedeep.training.checkpoint import load_checkpoint
from widedeep.training.run import train

EVERY_BATCH = "trainer.checkpoint_every_n_steps=1"


def _batches_done(checkpoint: Path) -> int:
    """The training batches a (whole, loadable) checkpoint has done."""
    state = load_checkpoint(checkpoint, "resume")
    return state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] + 1


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


class _BeforeSave(pl.Callback):
    """Runs ``action`` once, after training batch ``at`` (1-based) and before its checkpoint
    (Lightning calls the checkpoint callbacks last)."""

    def __init__(self, at: int, action) -> None:
        self.at, self.action = at, action

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.at:
            self.action()


@pytest.mark.slow
def test_a_kill_during_a_save_on_another_filesystem_keeps_the_previous_last_ckpt(tmp_path):
    system_temp = tmp_path / "system-temp"  # the run's TMPDIR, on this ext4/overlay disk
    system_temp.mkdir()
    with tmpfs(tmp_path / "tmpfs") as mount:
        assert os.stat(mount).st_dev != os.stat(system_temp).st_dev
        run = mount / "run"
        args = [*TINY, EVERY_BATCH, f"hydra.run.dir={run}"]
        marker, log = tmp_path / "paused", tmp_path / "killed.log"
        proc = start(PAUSE_IN_SAVE, *args, cwd=tmp_path, log=log, TMPDIR=str(system_temp),
                     PAUSE_AT="3", PAUSE_MARKER=str(marker))
        try:
            wait_for(marker, proc, log)  # half of the third last.ckpt is written
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            stop(proc)
        folder = run / "checkpoints"
        # The previous save, whole; the killed one's half file beside it, nothing elsewhere.
        assert _batches_done(folder / "last.ckpt") == 2
        assert list(system_temp.iterdir()) == []
        assert len(_temporaries(folder)) == 1

        resumed = cli(*args, f"resume_from={folder / 'last.ckpt'}", cwd=tmp_path,
                      TMPDIR=str(system_temp))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert (run / "metrics.json").exists()
        assert _temporaries(folder) == []  # the leftover was removed at the start
        assert list(system_temp.iterdir()) == []


def _fill(folder: Path) -> None:
    """Fill the filesystem of ``folder`` to the last byte (unbuffered: nothing left to flush)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 14, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_during_a_save_keeps_the_previous_file_and_says_why(tmp_path):
    with tmpfs(tmp_path / "small", size="16m") as mount:
        run = mount / "run"
        folder = run / "checkpoints"
        cfg = compose_config([*TINY, EVERY_BATCH], output_dir=str(run))
        # The disk fills after batch 3, before its last.ckpt: that save cannot land.
        with pytest.raises(OSError) as caught:
            train(cfg, [_BeforeSave(3, lambda: _fill(mount))])
        (mount / "filler").unlink()
        message = str(caught.value)
        assert caught.value.errno == errno.ENOSPC
        assert str(folder / "last.ckpt") in message and "ENOSPC" in message
        assert "\n" not in message
        assert _batches_done(folder / "last.ckpt") == 2
        assert _temporaries(folder) == []


def test_disk_full_injected_into_the_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from widedeep.training import checkpoint_io

    target = tmp_path / "last.ckpt"
    checkpoint_io.atomic_save({"step": torch.tensor(1)}, target)
    before = target.read_bytes()

    def full(checkpoint, file) -> None:
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io, "write_checkpoint", full)
    with pytest.raises(checkpoint_io.CheckpointSaveError, match="no space left") as caught:
        checkpoint_io.atomic_save({"step": torch.tensor(2)}, target)
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)
    assert target.read_bytes() == before
    assert _temporaries(tmp_path) == []


def test_an_immutable_checkpoint_folder_fails_before_training_naming_it(tmp_path, capsys):
    from widedeep.cli.train import _hydra_entry

    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    cfg = compose_config([*TINY], output_dir=str(run))
    with immutable(folder), pytest.raises(SystemExit) as caught:
        _hydra_entry(cfg)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"widedeep-train: error: checkpoint folder {folder}: ")
    assert "not writable" in lines[0]
    assert not (run / "preprocessor").exists()  # failed before loading the data


def test_a_folder_that_turns_unwritable_fails_at_the_first_save_that_does_not_land(tmp_path):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    cfg = compose_config([*TINY, EVERY_BATCH], output_dir=str(run))
    made = []

    def lock() -> None:
        made.append(immutable(folder))
        made[0].__enter__()

    try:
        with pytest.raises(OSError, match="not writable") as caught:
            train(cfg, [_BeforeSave(3, lock)])
    finally:
        if made:
            made[0].__exit__(None, None, None)
    assert str(folder) in str(caught.value)
    assert _batches_done(folder / "last.ckpt") == 2


def test_an_unwritable_folder_injected_fails_naming_it(tmp_path, monkeypatch):
    from widedeep.training import checkpoint_io

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(checkpoint_io.tempfile, "mkstemp", refuse)
    with pytest.raises(checkpoint_io.CheckpointSaveError, match="not writable") as caught:
        checkpoint_io.check_writable(tmp_path)
    assert f"checkpoint folder {tmp_path}:" in str(caught.value)
    with pytest.raises(checkpoint_io.CheckpointSaveError, match="not writable"):
        checkpoint_io.atomic_save({}, tmp_path / "best.ckpt")
    assert not (tmp_path / "best.ckpt").exists()


def test_a_killed_saves_temporary_is_removed_and_nothing_else(tmp_path):
    from widedeep.training import checkpoint_io

    (tmp_path / "last.ckpt").write_bytes(b"kept")
    (tmp_path / "notes.txt").write_text("kept")
    (tmp_path / ".last.ckpt.k2j4x.tmp").write_bytes(b"half")
    removed = checkpoint_io.remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.ckpt.k2j4x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "notes.txt"]
