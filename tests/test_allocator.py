"""keep_freed_memory: batches stop re-faulting the memory the previous batch freed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import widedeep

# Eight 13 MB activations per "batch", all freed at its end: the pattern of an MLP's forward.
BATCHES = """
import json, resource, sys
import numpy as np
import widedeep
took = widedeep.keep_freed_memory()
def batch():
    buffers = [np.ones(13 << 18, dtype=np.float32) for _ in range(8)]
    return sum(float(b[-1]) for b in buffers)
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    batch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"took": took, "faults_per_batch": faults / 5}))
"""


def run_batches(malloc: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "WIDEDEEP_MALLOC"))}
    if malloc:
        env["WIDEDEEP_MALLOC"] = malloc
    done = subprocess.run(
        [sys.executable, "-c", BATCHES], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_batches_are_reused_not_faulted_again():
    system = run_batches("system")
    kept = run_batches(None)
    assert system["took"] is False and kept["took"] is True
    # 8 x 13 MB = 26,624 pages a batch: by default glibc hands thousands of them back to the
    # kernel at the end of every batch (what it keeps depends on its dynamic thresholds), and
    # they fault again in the next.
    assert system["faults_per_batch"] > 2_000, system
    assert kept["faults_per_batch"] < 100, kept


def test_is_public_and_says_whether_it_took(monkeypatch):
    monkeypatch.setenv("WIDEDEEP_MALLOC", "system")
    assert widedeep.keep_freed_memory() is False


def test_a_mistyped_opt_out_is_an_error_not_ignored(monkeypatch):
    monkeypatch.setenv("WIDEDEEP_MALLOC", "sytem")
    with pytest.raises(ValueError, match="WIDEDEEP_MALLOC='sytem': unknown value"):
        widedeep.keep_freed_memory()


@pytest.mark.slow
def test_the_clis_name_a_mistyped_opt_out():
    env = {**os.environ, "WIDEDEEP_MALLOC": "sytem"}
    done = subprocess.run(
        [sys.executable, "-m", "widedeep.cli.predict", "checkpoint=none.ckpt"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 2
    assert "widedeep-predict: error: WIDEDEEP_MALLOC='sytem': unknown value" in done.stderr
