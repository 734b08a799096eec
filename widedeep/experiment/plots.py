"""The benchmark's PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from widedeep.core.io import atomic_write
from widedeep.experiment.curves import plot_curves, read_curves
from widedeep.experiment.plan import NONE, OBJECTIVES, frontier_arms
from widedeep.experiment.results import Measured
from widedeep.experiment.slices import slice_labels


def curves(cfg: Any, measured: Measured, out_dir: Path) -> None:
    """Per-epoch validation (split A) AUC of every run at the main levels, by arm."""
    b = cfg.bench
    runs = {}
    for cell in measured.outputs:
        main = cell.wide_level in (b.main.wide, NONE) and cell.deep_level in (b.main.deep, NONE)
        shown = ("wide", "deep", "joint", "joint_2x", *OBJECTIVES)  # the objectives: issue 20
        if main and cell.arm in shown or cell.arm.startswith("stagewise"):
            for model in cell.members():
                log = measured.records[model].path
                if (log / "logs" / "metrics.csv").is_file():
                    runs[log] = cell.arm
    if runs:
        plot_curves(
            read_curves(runs),
            out_dir / "curves.png",
            title=f"{cfg.data.name}: validation (split A) AUC per epoch, one line per run",
        )


def frontier_plot(cfg: Any, table: pl.DataFrame, out_dir: Path) -> None:
    """Test AUC (± std over cells) against non-zero cross weights: joint, each joint objective
    present and the best ensemble."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    markers = iter(("^-", "v-", "D-", "P-", "X-"))  # the objectives', solid like joint
    present = set(table["arm"].to_list())
    for arm in (a for a in frontier_arms(cfg.bench) if a in present):
        marker = {"joint": "o-", "ens_best": "s--"}.get(arm) or next(markers, ".-")
        part = table.filter(pl.col("arm") == arm).sort("cross_nonzero")
        ax.errorbar(
            part["cross_nonzero"], part["test_auc"], yerr=part["test_auc_std"].fill_null(0),
            fmt=marker, capsize=3, label=arm.replace("ens_best", "best ensemble"),
        )
        chosen = part.filter(pl.col("chosen"))
        ax.scatter(chosen["cross_nonzero"], chosen["test_auc"], s=160, facecolors="none",
                   edgecolors="black")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("non-zero cross weights (symlog)")
    ax.set_ylabel("test AUC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8 if len(present) > 2 else None)
    ax.set_title(f"{cfg.data.name}: size frontier (circled: chosen on split B)")
    fig.tight_layout()
    atomic_write(out_dir / "frontier.png", lambda p: fig.savefig(p, dpi=110, format="png"))


def plots(
    cfg: Any, measured: Measured, slices: pl.DataFrame, out_dir: Path,
    frontier: pl.DataFrame | None = None,
) -> None:
    results = measured.table
    curves(cfg, measured, out_dir)
    if frontier is not None and frontier.filter(pl.col("arm") == "joint").height >= 2:
        frontier_plot(cfg, frontier, out_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = cfg.data.name
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, column, label in (
        (axes[0], "params", "total parameters"),
        (axes[1], "nonzero_params", "non-zero parameters"),
    ):
        for arm, marker in (("joint", "o"), ("ens_best", "s")):
            per = (
                results.filter(pl.col("arm") == arm)
                .group_by("wide_level", "deep_level")
                .agg(
                    pl.col(column).mean(),
                    pl.col("test_auc").mean().alias("auc"),
                    pl.col("test_auc").std().alias("std"),
                )
                .sort(column)
            )
            ax.errorbar(
                per[column],
                per["auc"],
                yerr=per["std"].fill_null(0),
                fmt=marker,
                capsize=3,
                label=arm.replace("ens_best", "best ensemble"),
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (log scale)")
        ax.set_ylabel("test AUC")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"{name}: test AUC vs size, one point per (wide, deep) level; bars = std over seeds"
    )
    fig.tight_layout()
    atomic_write(out_dir / "auc_vs_params.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)

    order = slice_labels(list(cfg.bench.slices.edges))
    agg = slices.group_by("slice", "arm").agg(
        pl.col("auc").mean(),
        pl.col("auc").std().alias("std"),
        pl.col("share_wide").mean(),
        pl.col("share_deep").mean(),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.arange(len(order))
    arms = ("wide", "deep", "joint", "ens_best")
    for k, arm in enumerate(arms):
        part = {r["slice"]: r for r in agg.filter(pl.col("arm") == arm).iter_rows(named=True)}
        auc = [part.get(s, {}).get("auc", math.nan) for s in order]
        std = [part.get(s, {}).get("std") or 0.0 for s in order]
        axes[0].bar(
            x + (k - 1.5) * 0.2,
            auc,
            0.2,
            yerr=std,
            capsize=2,
            label=arm.replace("ens_best", "best ensemble"),
        )
    axes[0].set_xticks(x, order)
    axes[0].set_xlabel(f"occurrences of ({', '.join(cfg.bench.slices.fields)}) in training")
    axes[0].set_ylabel("test AUC")
    axes[0].set_ylim(0.5, 1.0)
    axes[0].legend(fontsize=8)
    joint = {r["slice"]: r for r in agg.filter(pl.col("arm") == "joint").iter_rows(named=True)}
    for k, (col, label) in enumerate(
        (("share_wide", "wide tower"), ("share_deep", "deep tower"))
    ):
        axes[1].bar(
            x + (k - 0.5) * 0.35,
            [joint.get(s, {}).get(col, math.nan) for s in order],
            0.35,
            label=label,
        )
    axes[1].set_xticks(x, order)
    axes[1].set_xlabel(axes[0].get_xlabel())
    axes[1].set_ylabel("share of the joint logit's variance")
    axes[1].legend()
    fig.suptitle(
        f"{name}: where memorisation (wide) and generalisation (deep) carry the prediction"
    )
    fig.tight_layout()
    atomic_write(out_dir / "slices.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
