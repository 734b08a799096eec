"""Helpers of the checkpoint-saving, preemption and divergence tests: filesystems the test
mounts (a tmpfs, skipped where mounting is not allowed), an immutable folder (chattr +i), and
the command line run in a subprocess that pauses at a given point for the test's signal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# 2,000 synthetic rows: 1,600 to train, 7 batches of 256 per epoch; a few seconds of training.
TINY = [
    "data.generator.n_rows=2000",
    "data.batch_size=256",
    "trainer.max_epochs=2",
    "trainer.patience=10",
    "trainer.progress_bar=false",
    "trainer.logger=none",
]
BATCHES_PER_EPOCH = 7


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@contextmanager
def tmpfs(where: Path, size: str = "64m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (a filesystem of its own); skip if not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        _run("chattr", "-R", "-i", str(where))
        _run("umount", "-l", str(where))


@contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``folder`` made immutable (chattr +i: even root cannot create files in it)."""
    made = _run("chattr", "+i", str(folder))
    if made.returncode != 0:
        pytest.skip(f"cannot make a folder immutable here (chattr +i): {made.stderr.strip()}")
    try:
        yield folder
    finally:
        _run("chattr", "-i", str(folder))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WIDEDEEP_DEBUG": "", **extra}


def cli(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "widedeep.cli.train", *args],
        cwd=cwd,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def start(script: str, *args: str, cwd: Path, log: Path, **extra_env: str) -> subprocess.Popen:
    """``python -c script args`` (a patched command line) in the background, its output (both
    streams) into ``log``: a file, so that a chatty run never blocks on a full pipe."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=cwd,
            env=env(**extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(marker: Path, proc: subprocess.Popen, log: Path) -> None:
    """Until the paused process has written ``marker`` (no timing: it signals when ready)."""
    deadline = time.monotonic() + 600  # a hang guard only
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its pause point:\n{log.read_text()[-3000:]}")
        assert time.monotonic() < deadline, "the run never reached its pause point"
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if a failed test left it running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


# The CLI, paused in the middle of writing the bytes of its PAUSE_AT-th last.ckpt: half of the
# file is on disk (flushed) when it writes PAUSE_MARKER and sleeps for the test's SIGKILL. Both
# ways a save can write those bytes are caught: torch.save into a real file (widedeep's atomic
# save) and a copy of a finished temporary file over the target (what fsspec's move does
# across filesystems, Lightning's default).
PAUSE_IN_SAVE = """
import io, os, shutil, sys, time
from pathlib import Path
import torch

at, marker = int(os.environ["PAUSE_AT"]), Path(os.environ["PAUSE_MARKER"])
count = [0]

def write_in_halves(data, file):
    file.write(data[: len(data) // 2])
    file.flush()
    os.fsync(file.fileno())
    count[0] += 1
    if count[0] == at:
        marker.write_text("paused")
        time.sleep(600)
    file.write(data[len(data) // 2 :])

real_save, real_copyfile = torch.save, shutil.copyfile

def name(file):
    try:  # a file opened from a descriptor is named by its number
        return os.readlink(f"/proc/self/fd/{file.fileno()}")
    except (AttributeError, OSError, ValueError):
        return str(getattr(file, "name", ""))

def save(obj, f, *args, **kwargs):
    if "last.ckpt" not in name(f):
        return real_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    write_in_halves(buffer.getvalue(), f)

def copyfile(src, dst, *args, **kwargs):
    if not str(dst).endswith("last.ckpt"):
        return real_copyfile(src, dst, *args, **kwargs)
    with open(dst, "wb") as out:
        write_in_halves(Path(src).read_bytes(), out)
    return dst

torch.save, shutil.copyfile = save, copyfile
from widedeep.cli.train import main
sys.argv = ["widedeep-train", *sys.argv[1:]]
main()
"""

# The CLI, paused before training batch PAUSE_AT (1-based, over all epochs) until SIGTERM has
# arrived: PAUSE_MARKER says it is waiting. The batch then trains and Lightning stops after it.
WAIT_FOR_SIGTERM = """
import os, sys, time
from pathlib import Path
import widedeep.training.module as lit
from widedeep.cli.train import main

at, marker = int(os.environ["PAUSE_AT"]), Path(os.environ["PAUSE_MARKER"])

def on_train_batch_start(self, batch, batch_idx):
    if self.trainer.fit_loop.epoch_loop.total_batch_idx + 1 == at:
        marker.write_text("waiting")
        while not self.trainer.received_sigterm:
            time.sleep(0.05)

lit.WideDeepModule.on_train_batch_start = on_train_batch_start
sys.argv = ["widedeep-train", *sys.argv[1:]]
main()
"""
