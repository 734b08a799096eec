"""benchmarks/fuxictr/run.py: the parts that need no FuxiCTR (data conversion, resuming)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuxictr" / "run.py"


@pytest.fixture
def run():
    return load_script(SCRIPT, "fuxictr_run")


def test_libfm_rows_become_bars_csv_rows(run, tmp_path):
    src = tmp_path / "train.libfm"
    src.write_text("-1 56:1 2800:1 5041:1 5050:1 5054:1 5055:1 5058:1 5060:1 5085:1 5169:1\n"
                   "1 3:1 1000:1 5040:1 5052:1 5054:1 5056:1 5058:1 5060:1 5075:1 5149:1\n")
    dst = tmp_path / "train.csv"
    run.libfm_to_csv(src, dst)
    with dst.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["label", *run.FIELDS]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert rows[1][1:3] == ["56", "2800"] and rows[2][-1] == "5149"


def test_a_malformed_libfm_line_names_file_and_line(run, tmp_path):
    src = tmp_path / "valid.libfm"
    src.write_text("1 1:1 2:1 3:1 4:1 5:1 6:1 7:1 8:1 9:1 10:1\n1 1:1 2:1\n")
    with pytest.raises(SystemExit, match=r"valid\.libfm:2: expected 11 tokens, got 3"):
        run.libfm_to_csv(src, tmp_path / "valid.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["valid.libfm"]  # no csv, no temp file


def test_finished_runs_are_skipped_and_the_summary_lists_the_rest(run, tmp_path, monkeypatch):
    row = dict.fromkeys(run.COLUMNS, "0")
    row.update(model="WideDeep", seed="0", test_auc="0.98", test_logloss="0.15", wall_s="60")
    run.append_row(tmp_path / "results.csv", row)
    trained = []
    monkeypatch.setattr(run, "build_data", lambda *a: {})
    monkeypatch.setattr(run, "train_one", lambda m, s, *a: trained.append((m, s)) or
                        dict(row, model=m, seed=s))
    run.main(["--out", str(tmp_path), "--seeds", "0,1", "--models", "WideDeep"])
    assert trained == [("WideDeep", 1)]
    summary = (tmp_path / "summary.md").read_text()
    assert "| WideDeep | 2 |" in summary
    assert "Not finished yet: DNN seed 0, DNN seed 1, WideDeep seed 2, DNN seed 2." in summary
