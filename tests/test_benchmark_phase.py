"""benchmarks/phase.py: the phase diagram's table from per-cell reports (no training)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "phase.py"


@pytest.fixture
def phase():
    return load_script(SCRIPT)


def test_cells_are_paired_over_seeds_and_missing_ones_say_so(phase, tmp_path):
    cell = tmp_path / "50k_dense"
    cell.mkdir()
    aucs = {
        "joint": [0.80, 0.81, 0.82], "ens_best": [0.79, 0.80, 0.80], "ens_deep_deep": [0.78] * 3
    }
    pl.DataFrame(
        [
            {"arm": arm, "data_seed": 0, "seed": s, "test_auc": auc}
            for arm, values in aucs.items()
            for s, auc in enumerate(values)
        ]
    ).write_parquet(cell / "results.parquet")
    pl.DataFrame(
        [{"data_seed": 0, "seed": 0, "model": m, "recovered": r}
         for m, r in (("joint", 0.5), ("ens_best", 0.25))]
    ).write_csv(cell / "exceptions.csv")
    assert phase.main([str(tmp_path)]) == 0
    table = phase.collect(tmp_path)
    row = table.filter(pl.col("run")).row(0, named=True)
    assert row["joint-ens_best"] == pytest.approx((0.01 + 0.01 + 0.02) / 3)
    assert row["joint-ens_deep_deep"] == pytest.approx(0.03)
    text = (tmp_path / "phase.md").read_text()
    assert "| 50k | +0.0133 ± " in text and "not run" in text and "0.50 / 0.25" in text
    assert (tmp_path / "phase.png").is_file()
