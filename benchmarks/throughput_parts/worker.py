"""One row in this process: the worker that `throughput.py --worker` runs."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .data import load_data
from .handwritten_rows import run_handwritten
from .measure import StepClock, peak_rss_mib
from .peer_rows import run_peer
from .spec import RowSpec, Settings
from .widedeep_rows import run_widedeep

RUNNERS = {"widedeep": run_widedeep, "hand-written": run_handwritten}


def worker(spec: RowSpec, data_dir: Path, s: Settings, launched: float) -> dict[str, Any]:
    """One row, in this process: train one epoch (or --steps), then one inference pass."""
    import torch

    torch.set_num_threads(s.threads)
    data = load_data(data_dir)
    rows = len(data["label"])
    if s.steps:
        rows = min(rows, s.steps * s.batch_size)
    clock = StepClock(launched, s.batch_size, rows, s.warmup, profile_steps=s.profile_steps)
    run = RUNNERS.get(spec.system, run_peer)
    inference, params = run(spec, data, s, clock)
    return {
        "row": spec.name,
        "system": spec.system,
        "optimizer": spec.optimizer,
        "reference": spec.reference,
        "train_rows": rows,
        "params": params,
        "clock": asdict(clock),  # summarized by the parent (see StepClock)
        "inference_raw": inference,
        "peak_rss_mib": peak_rss_mib(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.executable,
    }
