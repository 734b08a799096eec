"""Claim 1 across the datasets: one table from the tuned study's per-dataset reports (issue 15,
part 5; issue 20's objective arms where their study ran).

    python benchmarks/claims.py benchmarks/results/tuned      # -> claims.md beside the reports

Each `<name>/results.parquet` written by `widedeep-bench` with `bench.grid=main` gives a row:
joint and the best ensemble (mean test AUC over the (data split, seed) cells), joint − ens_best
paired with its 95% t-interval (the numbers of that report's summary.md; its bootstrap interval
is there), two averaged joint models − joint, and how many rows' runs reached their epoch cap
without early stopping (a cap that may have bound). A `<name>-objectives` report adds each joint
objective − ens_best of its own study (one commit: both arms retrained there). Reports that are
missing are listed as not run.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from widedeep.core.io import atomic_write  # noqa: E402
from widedeep.experiment.plan import OBJECTIVES  # noqa: E402
from widedeep.experiment.stats import paired_t  # noqa: E402

DATASETS = ("criteo", "adult", "movielens", "synthetic", "synthetic-p3", "frappe", "bars-frappe")
CELL = ["data_seed", "seed"]


def main_levels(results: pl.DataFrame, where: Path) -> pl.DataFrame:
    """The report's rows, which must hold one level pair per arm (``bench.grid=main``)."""
    levels = results.group_by("arm").agg(pl.struct("wide_level", "deep_level").n_unique())
    several = levels.filter(pl.col("wide_level") > 1)["arm"].to_list()
    if several:
        raise ValueError(f"{where}: arms {several} have several levels; claims.py reads "
                         "bench.grid=main reports")
    return results


def difference(results: pl.DataFrame, a: str, b: str) -> dict[str, float]:
    """a − b in test AUC, paired over (data split, seed); n = 0 when either arm is absent."""
    left = results.filter(pl.col("arm") == a).select(*CELL, pl.col("test_auc").alias("a"))
    right = results.filter(pl.col("arm") == b).select(*CELL, pl.col("test_auc").alias("b"))
    both = left.join(right, on=CELL, nulls_equal=True)
    return paired_t(both["a"].to_list(), both["b"].to_list())


def capped(results: pl.DataFrame) -> tuple[int, int]:
    """(rows whose runs reached their epoch cap, rows): early stopping never fired in those,
    so the cap may have bound (an ensemble's row: any member's run)."""
    trained = results.filter(pl.col("stopped_early").is_not_null())
    return int((~trained["stopped_early"]).sum()), trained.height


def dataset_row(name: str, results: pl.DataFrame, objectives: pl.DataFrame | None) -> dict:
    joint = results.filter(pl.col("arm") == "joint")["test_auc"]
    ens = results.filter(pl.col("arm") == "ens_best")["test_auc"]
    at_cap, trained = capped(results)
    row = {
        "dataset": name,
        "run": True,
        "cells": joint.len(),
        "joint": joint.mean(),
        "ens_best": ens.mean(),
        "primary": difference(results, "joint", "ens_best"),
        "joint_joint": difference(results, "ens_joint_joint", "joint"),
        "at_cap": at_cap,
        "trained": trained,
        "objectives": {},
    }
    if objectives is not None:
        row["objectives"] = {
            arm: difference(objectives, arm, "ens_best")
            for arm in OBJECTIVES
            if objectives.filter(pl.col("arm") == arm).height
        }
    return row


def collect(root: Path, names: tuple[str, ...] = DATASETS) -> list[dict]:
    rows = []
    for name in names:
        path = root / name / "results.parquet"
        if not path.is_file():
            rows.append({"dataset": name, "run": False})
            continue
        results = main_levels(pl.read_parquet(path), path)
        beside = root / f"{name}-objectives" / "results.parquet"
        objectives = main_levels(pl.read_parquet(beside), beside) if beside.is_file() else None
        rows.append(dataset_row(name, results, objectives))
    return rows


def _diff(d: dict[str, float]) -> str:
    if not d.get("n"):
        return "—"
    ci = "" if math.isnan(d["ci"]) else f" ± {d['ci']:.4f}"
    return f"{d['mean']:+.4f}{ci} (p={d['p']:.2g}, n={d['n']})"


def markdown(rows: list[dict]) -> str:
    lines = [
        "# Claim 1 across the datasets (tuned study)",
        "",
        "Test AUC, mean over the (data split, seed) cells; differences paired, mean ± 95% "
        "t half-width, uncorrected. The bootstrap intervals are in each dataset's summary.md.",
        "",
        "| dataset | cells | joint | best ensemble | joint − ens_best | two joint models − joint "
        "| rows at the epoch cap |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["run"]:
            lines.append(f"| {r['dataset']} | not run | | | | | |")
            continue
        lines.append(
            f"| {r['dataset']} | {r['cells']} | {r['joint']:.4f} | {r['ens_best']:.4f} | "
            f"{_diff(r['primary'])} | {_diff(r['joint_joint'])} | "
            f"{r['at_cap']} of {r['trained']} |"
        )
    with_objectives = [r for r in rows if r["run"] and r["objectives"]]
    lines += ["", "## Joint objectives − the best ensemble of their own study (issue 20)", ""]
    if not with_objectives:
        return "\n".join([*lines, "No objectives study has run yet.", ""])
    arms = [a for a in OBJECTIVES if any(a in r["objectives"] for r in with_objectives)]
    lines += ["| dataset | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for r in with_objectives:
        cells = [_diff(r["objectives"].get(a, {})) for a in arms]
        lines.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder of the per-dataset reports")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.root)
    except ValueError as err:
        print(f"claims.py: error: {err}", file=sys.stderr)
        return 2
    atomic_write(args.root / "claims.md", lambda p: p.write_text(markdown(rows)))
    done = sum(r["run"] for r in rows)
    print(f"claims: {done} of {len(rows)} datasets -> {args.root / 'claims.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
