"""SIGTERM to a 2-process DDP run (gloo, CPU): every rank stops at the same batch, last.ckpt is
saved, the job exits 143 instead of hanging, and the run resumes from the file (issue 17,
docs/faults.md "Preemption: SIGTERM and SLURM"). Lightning's own handler broadcasts inside the
signal handler and deadlocks against the backward's all-reduce, and its loops stop a rank on its
own flag: a signal to one rank only (or one rank's signal a batch late, under load) left the
others training while it saved (`DistributedSigterm`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _save_util import env, stop

from widedeep.training.checkpoint import load_checkpoint

DDP = [
    "trainer=ddp",
    "data.generator.n_rows=4000",
    "data.batch_size=256",
    "trainer.patience=1000",
    "trainer.progress_bar=false",
    "trainer.logger=none",
]
EPOCH_LINE = re.compile(r"\bepoch (\d+)\s+val/auc")
HANG_GUARD = 300  # seconds: a stopped rank exits in about one; a deadlock never does


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "widedeep.cli.train", *args],
            cwd=cwd, env=env(), stdout=out, stderr=subprocess.STDOUT,
        )


def _epochs(log: Path) -> list[int]:
    return [int(m.group(1)) for m in EPOCH_LINE.finditer(log.read_text())]


def _rank_1(proc: subprocess.Popen) -> int:
    """The pid of the rank-1 process Lightning launched from ``proc``."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"train_ddp_process_1" in cmdline:
                return int(pid)
        time.sleep(0.2)
    pytest.fail("no rank-1 process found")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["launcher", "rank_1_only"])
def test_sigterm_under_ddp_stops_every_rank_saves_and_resumes(tmp_path, target):
    run, log = tmp_path / "run", tmp_path / "run.log"
    proc = _start([*DDP, "trainer.max_epochs=1000", f"hydra.run.dir={run}"], tmp_path, log)
    try:
        deadline = time.monotonic() + 600  # a guard only: the wait is for an event
        while len(_epochs(log)) < 2:  # training, past the first epoch end
            if proc.poll() is not None:
                pytest.fail(f"the run ended before the signal:\n{log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "the run never reached its second epoch"
            time.sleep(0.2)
        if target == "launcher":  # rank 0, as a scheduler signals the job step
            proc.send_signal(signal.SIGTERM)
        else:  # one rank alone: the others learn of it from the ranks' all-reduce
            os.kill(_rank_1(proc), signal.SIGTERM)
        try:
            code = proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the DDP run hung after SIGTERM:\n{log.read_text()[-3000:]}")
    finally:
        stop(proc)
    output = log.read_text()
    assert code == 143, output[-3000:]
    assert "Traceback" not in output
    last = run / "checkpoints" / "last.ckpt"
    stopped = [line for line in output.splitlines() if "stopped by SIGTERM" in line]
    assert stopped and all(f"resume_from={last}" in line for line in stopped), output[-3000:]
    # one line per rank, each naming the same batch: the ranks stopped together
    assert len(stopped) == 2 and len({line[line.index("stopped by"):] for line in stopped}) == 1
    assert not (run / "metrics.json").exists()
    state = load_checkpoint(last, "resume")
    saved_epoch = state["epoch"]
    done = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"]
    assert done > 0

    resumed_log = tmp_path / "resumed.log"
    resumed = _start(
        [*DDP, f"trainer.max_epochs={saved_epoch + 2}", f"hydra.run.dir={run}",
         f"resume_from={last}"], tmp_path, resumed_log,
    )
    try:
        assert resumed.wait(timeout=600) == 0, resumed_log.read_text()[-3000:]
    finally:
        stop(resumed)
    # It continued from the file: its first validated epoch is the saved one, not epoch 0.
    assert _epochs(resumed_log)[0] == saved_epoch, resumed_log.read_text()[-3000:]
    assert (run / "metrics.json").exists()
