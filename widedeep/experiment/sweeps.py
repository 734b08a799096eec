"""The table of the runs under a directory, from their metrics.json files (printed by
``python -m widedeep.cli.summary outputs/demo``)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def run_overrides(run: Path) -> dict[str, str]:
    """The command-line overrides of the run in ``run`` (Hydra's .hydra/overrides.yaml), by
    key: ``{"optim.wide.lr": "0.1"}``; {} for a run Hydra did not start."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    from widedeep.training.run_files import read_run_yaml

    pairs = (str(o).split("=", 1) for o in read_run_yaml(path, "the run's overrides"))
    return {key.lstrip("+~"): value for key, value in (p for p in pairs if len(p) == 2)}


def collect(root: Path) -> pl.DataFrame:
    """One row per ``metrics.json`` found below ``root``, with a column per override key of
    the runs (those of a sweep tell its rows apart), after the seed."""
    rows, overrides = [], []
    for path in sorted(root.rglob("metrics.json")):
        m = json.loads(path.read_text())
        overrides.append(run_overrides(path.parent))
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
    keys = sorted({k for o in overrides for k in o} - {"seed", "model", "data"})
    rows = [
        {**{k: r[k] for k in ("dataset", "model", "seed")}, **{k: o.get(k) for k in keys}, **r}
        for r, o in zip(rows, overrides, strict=True)
    ]
    return pl.DataFrame(rows).sort("dataset", "model", "seed", *keys, nulls_last=True)


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
