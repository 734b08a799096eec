"""benchmarks/claims.py: claim 1's table across the datasets from the per-dataset reports."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import load_script
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "claims.py"


@pytest.fixture
def claims():
    return load_script(SCRIPT)


def _report(folder: Path, aucs: dict[str, list[float]], levels: int = 1) -> None:
    """A results.parquet of two data splits x two seeds; ``levels`` > 1 puts the joint arm at
    several wide levels (a sweep, not bench.grid=main)."""
    folder.mkdir(parents=True)
    rows = []
    for arm, values in aucs.items():
        for i, auc in enumerate(values):
            rows.append({
                "arm": arm, "data_seed": i // 2, "seed": i % 2, "test_auc": auc,
                "wide_level": f"l{i % levels}" if arm == "joint" else "l0", "deep_level": "d",
                "stopped_early": not (arm == "wide" and i == 0),
            })
    pl.DataFrame(rows).write_parquet(folder / "results.parquet")


def test_rows_pair_cells_and_equal_scipys_paired_t(claims, tmp_path):
    joint, ens = [0.80, 0.82, 0.81, 0.84], [0.79, 0.80, 0.81, 0.80]
    _report(tmp_path / "adult", {"joint": joint, "ens_best": ens, "wide": [0.7] * 4,
                                 "ens_joint_joint": [0.81, 0.83, 0.81, 0.85]})
    _report(tmp_path / "adult-objectives", {"joint_aux": [0.82] * 4, "ens_best": ens})
    assert claims.main([str(tmp_path)]) == 0
    rows = {r["dataset"]: r for r in claims.collect(tmp_path)}
    diffs = [a - b for a, b in zip(joint, ens, strict=True)]
    t = stats.ttest_1samp(diffs, 0.0)
    half = stats.t.ppf(0.975, 3) * stats.sem(diffs)
    primary = rows["adult"]["primary"]
    assert primary["mean"] == pytest.approx(sum(diffs) / 4)
    assert primary["p"] == pytest.approx(t.pvalue) and primary["ci"] == pytest.approx(half)
    assert rows["adult"]["joint_joint"]["mean"] == pytest.approx(0.0075)
    assert (rows["adult"]["at_cap"], rows["adult"]["trained"]) == (1, 16)
    aux = rows["adult"]["objectives"]["joint_aux"]["mean"]
    assert aux == pytest.approx(0.82 - sum(ens) / 4)
    assert not rows["criteo"]["run"]
    text = (tmp_path / "claims.md").read_text()
    assert f"| adult | 4 | {sum(joint) / 4:.4f} | {sum(ens) / 4:.4f} | +0.0175 ± {half:.4f}" in text
    assert "| criteo | not run |" in text and "| joint_aux |" in text and "1 of 16" in text


def test_a_sweep_report_is_refused_in_one_line(claims, tmp_path, capsys):
    _report(tmp_path / "synthetic", {"joint": [0.8] * 4, "ens_best": [0.79] * 4}, levels=2)
    assert claims.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "synthetic/results.parquet" in err[0] and "['joint']" in err[0]
