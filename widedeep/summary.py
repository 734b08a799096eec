"""Print a table of the runs under a directory: ``python -m widedeep.summary outputs/demo``."""

from __future__ import annotations

import json
import sys
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m widedeep.summary RUNS_DIR", file=sys.stderr)
        return 2
    try:
        print(to_markdown(collect(Path(args[0]))))
    except FileNotFoundError as err:
        print(f"widedeep.summary: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
