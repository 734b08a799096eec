"""benchmarks/coadaptation.py on a tiny log: every curve trained, written and plotted."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "coadaptation.py"


@pytest.mark.slow
def test_every_curve_is_trained_and_plotted_and_a_rerun_reuses_the_runs(tmp_path):
    module = load_script(SCRIPT)
    argv = [
        "--out",
        str(tmp_path),
        "--rows",
        "3000",
        "--epochs",
        "2",
        "--patience",
        "5",
        "model.deep.hidden=[16]",
    ]
    module.main(argv)
    curves = pl.read_csv(tmp_path / "curves.csv")
    names = ["wide", "deep", "joint", "tower_dropout", "aux_loss", "warm", "per_tower_stop"]
    assert curves["run"].unique(maintain_order=True).to_list() == names
    runs = pl.read_csv(tmp_path / "runs.csv")
    for row in runs.iter_rows(named=True):  # one point per trained epoch
        assert curves.filter(run=row["run"]).height == row["epochs"]
    assert (tmp_path / "coadaptation.png").stat().st_size > 0
    stamp = (tmp_path / "runs" / "joint" / "metrics.json").stat().st_mtime_ns
    module.main(argv)
    assert (tmp_path / "runs" / "joint" / "metrics.json").stat().st_mtime_ns == stamp
