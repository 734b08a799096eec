"""Where joint training wins: the phase diagram on synthetic data (issue 15, part 3).

One `widedeep-bench` report per cell (training rows x exception regime), run by
``bash benchmarks/study.sh phase``; this script reads them and draws the diagram:

    python benchmarks/phase.py benchmarks/results/tuned/phase      # -> phase.md, phase.png

Per cell: joint − best ensemble and joint − deep+deep in test AUC (mean over seeds, 95%
t-interval), and the share of the planted exception effect each arm recovered (Platt-calibrated
on split B, from the cell's exceptions.csv). A cell whose report is missing is shown as not run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from widedeep.core.io import atomic_write  # noqa: E402
from widedeep.experiment.stats import paired_t  # noqa: E402

ROWS = ("50k", "200k", "1m")
REGIMES = ("dense", "rare", "tail")
PAIRS = (("joint", "ens_best"), ("joint", "ens_deep_deep"))


def cell_differences(results: pl.DataFrame, a: str, b: str) -> dict[str, float]:
    """a − b in test AUC, paired over (data split, seed)."""
    keys = ["data_seed", "seed"]
    left = results.filter(pl.col("arm") == a).select(*keys, pl.col("test_auc").alias("a"))
    right = results.filter(pl.col("arm") == b).select(*keys, pl.col("test_auc").alias("b"))
    both = left.join(right, on=keys, nulls_equal=True)
    return paired_t(both["a"].to_list(), both["b"].to_list())


def collect(root: Path) -> pl.DataFrame:
    rows = []
    for n in ROWS:
        for regime in REGIMES:
            cell = root / f"{n}_{regime}"
            if not (cell / "results.parquet").is_file():
                rows.append({"rows": n, "regime": regime, "run": False})
                continue
            results = pl.read_parquet(cell / "results.parquet")
            row = {"rows": n, "regime": regime, "run": True}
            for a, b in PAIRS:
                d = cell_differences(results, a, b)
                row |= {f"{a}-{b}": d["mean"], f"{a}-{b}_ci": d["ci"], f"{a}-{b}_n": d["n"]}
            exceptions = cell / "exceptions.csv"
            if exceptions.is_file():
                rec = pl.read_csv(exceptions).group_by("model").agg(pl.col("recovered").mean())
                row |= {f"recovered_{m}": v for m, v in rec.iter_rows()}
            rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def _cell(table: pl.DataFrame, n: str, regime: str) -> dict:
    return table.filter((pl.col("rows") == n) & (pl.col("regime") == regime)).row(0, named=True)


def markdown(table: pl.DataFrame) -> str:
    lines = ["# Phase diagram: where joint training wins (synthetic log)", ""]
    for a, b in PAIRS:
        lines += [f"## {a} − {b}, test AUC (mean ± 95% t half-width over seeds)", ""]
        lines += ["| rows \\ regime | " + " | ".join(REGIMES) + " |", "|---" * 4 + "|"]
        for n in ROWS:
            cells = []
            for regime in REGIMES:
                r = _cell(table, n, regime)
                key = f"{a}-{b}"
                if not r["run"] or r.get(key) is None:
                    cells.append("not run")
                elif not r[f"{key}_n"]:
                    cells.append("n/a")
                else:
                    ci = r[f"{key}_ci"]
                    cells.append(f"{r[key]:+.4f}" + ("" if math.isnan(ci) else f" ± {ci:.4f}"))
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Planted exception effect recovered (Platt-calibrated on B; joint / best ensemble)",
        "",
        "| rows \\ regime | " + " | ".join(REGIMES) + " |",
        "|---" * 4 + "|",
    ]
    for n in ROWS:
        cells = []
        for regime in REGIMES:
            r = _cell(table, n, regime)
            joint, ens = r.get("recovered_joint"), r.get("recovered_ens_best")
            cells.append("not run" if joint is None else f"{joint:.2f} / {ens:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _panel(fig, k: int, grid: np.ndarray, labels: list[list[str]], title: str) -> None:
    """One heatmap, each cell labelled with its numbers (an interval, or joint / ensemble)."""
    ax = fig.add_subplot(1, 3, k + 1)
    limit = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 0.01
    image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit)
    for i, row in enumerate(labels):
        for j, label in enumerate(row):
            # White text on the darkest cells, black elsewhere.
            dark = np.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * limit
            ax.text(
                j,
                i,
                label,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(len(REGIMES)), REGIMES)
    ax.set_yticks(range(len(ROWS)), ROWS)
    ax.set_xlabel("exception regime")
    ax.set_ylabel("training rows")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)


def heatmap(table: pl.DataFrame, path: Path) -> None:
    """joint − ens_best and joint − ens_deep_deep (mean, 95% t half-width), and the exception
    effect recovered (joint − best ensemble, labelled joint / ensemble)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2))
    FigureCanvasAgg(fig)
    shape = (len(ROWS), len(REGIMES))
    for k, (a, b) in enumerate(PAIRS):
        key = f"{a}-{b}"
        grid = np.full(shape, np.nan)
        labels = [["not run"] * len(REGIMES) for _ in ROWS]
        for i, n in enumerate(ROWS):
            for j, regime in enumerate(REGIMES):
                r = _cell(table, n, regime)
                if r["run"] and r.get(key) is not None:
                    grid[i, j] = r[key]
                    ci = r[f"{key}_ci"]
                    labels[i][j] = f"{r[key]:+.4f}" + ("" if math.isnan(ci) else f"\n± {ci:.4f}")
        _panel(fig, k, grid, labels, f"{a} − {b}, test AUC (blue: joint wins)")
    grid = np.full(shape, np.nan)
    labels = [["not run"] * len(REGIMES) for _ in ROWS]
    for i, n in enumerate(ROWS):
        for j, regime in enumerate(REGIMES):
            r = _cell(table, n, regime)
            joint, ens = r.get("recovered_joint"), r.get("recovered_ens_best")
            if joint is not None and ens is not None:
                grid[i, j] = joint - ens
                labels[i][j] = f"{joint:.2f} / {ens:.2f}"
    _panel(fig, 2, grid, labels, "exception effect recovered: joint / best ensemble")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder of the cells' reports")
    args = parser.parse_args(argv)
    table = collect(args.root)
    atomic_write(args.root / "phase.md", lambda p: p.write_text(markdown(table)))
    heatmap(table, args.root / "phase.png")
    print(f"phase diagram: {table['run'].sum()} of {table.height} cells run -> {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
