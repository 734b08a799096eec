"""``bench(cfg)``: run (or resume) the plan, then write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from widedeep.experiment.plan import execute
from widedeep.experiment.report import write_report
from widedeep.experiment.results import collect


def bench(cfg: Any) -> Path:
    """Run (or resume) the plan, then write results, summary and plots; returns the out dir."""
    runs_dir = Path(cfg.bench.runs_dir)
    out_dir = Path(cfg.bench.out_dir)
    execute(cfg, runs_dir)
    results = collect(cfg, runs_dir)
    write_report(cfg, results, runs_dir, out_dir)
    return out_dir
