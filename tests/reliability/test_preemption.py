"""SIGTERM mid-epoch (a scheduler's preemption): widedeep-train saves last.ckpt, says so in one
line, exits 143 (never 0), and the run resumes from that file to the same end as an
uninterrupted one (issue 17, docs/faults.md "Preemption: SIGTERM and SLURM")."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from _save_util import BATCHES_PER_EPOCH, TINY, WAIT_FOR_SIGTERM, cli, start, stop, wait_for

from widedeep.training.checkpoint import load_checkpoint

TOLERANCE = 1e-6


# (1-based training batch over all epochs when the signal comes, the batches the saved loop
# counts as completed: Lightning counts a batch completed after its batch-end hooks, where the
# save happens, so mid-epoch the batch just trained is not yet counted)
MID_EPOCH = (BATCHES_PER_EPOCH + 3, BATCHES_PER_EPOCH + 2)  # epoch 1, batch 3: saved after it
# The last batch of epoch 0 is followed by its validation: the save waits for it (a save
# before would resume past an epoch never validated), when all its batches are completed.
LAST_BATCH = (BATCHES_PER_EPOCH, BATCHES_PER_EPOCH)


@pytest.mark.slow
@pytest.mark.parametrize(("signalled_at", "saved_at"), [MID_EPOCH, LAST_BATCH],
                         ids=["mid_epoch", "last_batch_of_an_epoch"])
def test_sigterm_mid_epoch_exits_143_saves_last_ckpt_and_the_run_resumes(
    tmp_path, signalled_at, saved_at
):
    run, full = tmp_path / "run", tmp_path / "full"
    marker, log = tmp_path / "waiting", tmp_path / "run.log"
    proc = start(WAIT_FOR_SIGTERM, *TINY, f"hydra.run.dir={run}", cwd=tmp_path, log=log,
                 PAUSE_AT=str(signalled_at), PAUSE_MARKER=str(marker))
    try:
        wait_for(marker, proc, log)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=600)
    finally:
        stop(proc)
    output = log.read_text()
    assert code == 143, output[-3000:]
    last = run / "checkpoints" / "last.ckpt"
    lines = [line for line in output.splitlines() if "stopped by SIGTERM" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"{last} holds the state to resume from" in lines[0]
    assert f"resume_from={last}" in lines[0]
    assert "Traceback" not in output
    assert not (run / "metrics.json").exists()  # not finished, and not pretending to be
    # Saved on the signal, after the batch being trained when it came (no periodic saves here).
    state = load_checkpoint(last, "resume")
    progress = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]
    assert progress["completed"] == saved_at

    resumed = cli(*TINY, f"hydra.run.dir={run}", f"resume_from={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uninterrupted = cli(*TINY, f"hydra.run.dir={full}", cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert b["epochs"] == a["epochs"]
    for split in ("val", "test"):
        for metric in ("auc", "logloss"):
            assert b[split][metric] == pytest.approx(a[split][metric], abs=TOLERANCE)
    weights = [load_checkpoint(r / "checkpoints/last.ckpt", "resume")["state_dict"]
               for r in (full, run)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], atol=TOLERANCE, rtol=0)
