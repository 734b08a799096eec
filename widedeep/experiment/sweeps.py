"""The table of the runs under a directory, from their metrics.json files (printed by
``python -m widedeep.cli.summary outputs/demo``)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def collect(root: Path) -> pl.DataFrame:
    """One row per ``metrics.json`` found below ``root``."""
    rows = []
    for path in sorted(root.rglob("metrics.json")):
        m = json.loads(path.read_text())
        rows.append(
            {
                "dataset": m["dataset"],
                "model": m["kind"],
                "seed": m["seed"],
                "test_auc": m["test"]["auc"],
                "test_logloss": m["test"]["logloss"],
                "params": m["params"]["total"],
                "wide_params": m["params"]["wide"],
                "wide_nonzero": m["params"]["wide_nonzero"],
                "deep_params": m["params"]["deep"],
                "epochs": m["epochs"],
                "wall_s": m["wall_time_s"],
            }
        )
    if not rows:
        raise FileNotFoundError(f"no metrics.json below {root}")
    return pl.DataFrame(rows).sort("dataset", "model", "seed")


def to_markdown(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [header, rule]
    for row in frame.iter_rows():
        cells = [
            f"{v:.4f}"
            if isinstance(v, float) and abs(v) < 10
            else f"{v:.1f}"
            if isinstance(v, float)
            else str(v)
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
