"""The joint-vs-ensemble report: tables, frequency slices, exception recovery and plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.core.io import atomic_write
from widedeep.experiment.plan import levels_table
from widedeep.experiment.plots import plots
from widedeep.experiment.slices import exception_recovery, slice_labels, slice_table
from widedeep.experiment.stats import mean_ci, paired, smallest_within

ARMS = ("wide", "deep", "joint", "ens_mean_prob", "ens_mean_logit", "ens_stack", "ens_best")


def _fmt(mean: float, spread: float, digits: int = 4) -> str:
    if math.isnan(spread):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def summary_markdown(
    cfg: Any, results: pl.DataFrame, slices: pl.DataFrame, exceptions: pl.DataFrame | None
) -> str:
    b = cfg.bench
    main_w, main_d = b.main.wide, b.main.deep
    lines = [
        f"# Joint vs ensemble: {cfg.data.name}",
        "",
        f"Seeds {list(b.seeds)}; main levels wide={main_w}, deep={main_d}; "
        "every arm uses the same data, split, features, optimizer settings and early "
        "stopping (validation AUC); no per-arm tuning.",
        "",
        "| arm | test AUC (mean ± std) | test log loss | params | non-zero params |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        lv = {"wide": (main_w, "-"), "deep": ("-", main_d)}.get(arm, (main_w, main_d))
        part = results.filter(
            (pl.col("arm") == arm)
            & (pl.col("wide_level") == lv[0])
            & (pl.col("deep_level") == lv[1])
        )
        if part.is_empty():
            continue
        auc = mean_ci(part["test_auc"].to_list())
        ll = mean_ci(part["test_logloss"].to_list())
        lines.append(
            f"| {arm} | {_fmt(auc[0], auc[2])} | {_fmt(ll[0], ll[2])} | "
            f"{part['params'].mean():,.0f} | {part['nonzero_params'].mean():,.0f} |"
        )
    lines += ["", "Paired test-AUC differences over seeds (mean, 95% t-interval):", ""]
    for a, other in (("joint", "ens_best"), ("joint", "wide"), ("joint", "deep")):
        d = paired(results, a, other, main_w, main_d)
        lines.append(f"- {a} − {other}: {d['mean']:+.4f} ± {d['ci95']:.4f} (n={d['n']})")
    lines += [
        "",
        "## Size",
        "",
        "| arm | smallest config within 0.001 AUC of its best | "
        "params | non-zero | its AUC | best AUC |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ("joint", "ens_best"):
        s = smallest_within(results, arm)
        lines.append(
            f"| {arm} | w={s['wide_level']}, d={s['deep_level']} | {s['params']:,.0f} "
            f"| {s['nonzero_params']:,.0f} | {s['test_auc']:.4f} | "
            f"{s['best_auc']:.4f} |"
        )
    lines += [
        "",
        "Wide tower non-zero weights, trained jointly vs alone (same level, mean over seeds):",
        "",
        "| wide level | alone | joint (at deep=" + main_d + ") |",
        "|---|---|---|",
    ]
    for _, level, _ in (t for t in levels_table(b) if t[0] == "wide"):
        alone = results.filter((pl.col("arm") == "wide") & (pl.col("wide_level") == level))
        joint = results.filter(
            (pl.col("arm") == "joint")
            & (pl.col("wide_level") == level)
            & (pl.col("deep_level") == main_d)
        )
        lines.append(
            f"| {level} | {alone['wide_nonzero'].mean():,.0f} | "
            f"{joint['wide_nonzero'].mean():,.0f} |"
        )
    lines += ["", "Levels:", ""]
    lines += [f"- {tower} `{name}`: {text}" for tower, name, text in levels_table(b)]
    lines += [
        "",
        f"## Frequency slices ({', '.join(b.slices.fields)} in training)",
        "",
        "AUC is n/a where a slice holds one class only; its log loss per arm is in `slices.csv`.",
        "",
        "| slice | rows | click rate | wide AUC | deep AUC | joint AUC | ens_best AUC | "
        "joint mean abs wide logit | mean abs deep logit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    agg = slices.group_by("slice", "arm", maintain_order=True).agg(
        pl.col("rows").first(),
        pl.col("click_rate").mean(),
        pl.col("auc").mean(),
        pl.col("mean_abs_wide").mean(),
        pl.col("mean_abs_deep").mean(),
    )
    for name in slice_labels(list(b.slices.edges)):
        row = {r["arm"]: r for r in agg.filter(pl.col("slice") == name).iter_rows(named=True)}
        if not row:
            continue
        j = row["joint"]
        lines.append(
            f"| {name} | {j['rows']:,} | {j['click_rate']:.3f} | "
            + " | ".join(_auc(row[a]["auc"]) for a in ("wide", "deep", "joint", "ens_best"))
            + f" | {j['mean_abs_wide']:.3f} | {j['mean_abs_deep']:.3f} |"
        )
    if exceptions is not None:
        lines += [
            "",
            "## Planted exceptions recovered (slope of logit on the true effect; 1 = all)",
            "",
            "| model | recovered (mean ± std) |",
            "|---|---|",
        ]
        for name in ("wide", "deep", "joint", "ens_best", "joint_wide", "joint_deep"):
            v = mean_ci(exceptions.filter(pl.col("model") == name)["recovered"].to_list())
            lines.append(f"| {name} | {_fmt(v[0], v[2], 3)} |")
    return "\n".join(lines) + "\n"


def _auc(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def write_report(cfg: Any, results: pl.DataFrame, runs_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "results.parquet", results.write_parquet)
    atomic_write(out_dir / "results.csv", results.write_csv)
    slices = slice_table(cfg, results, runs_dir)
    atomic_write(out_dir / "slices.csv", slices.write_csv)
    exceptions = exception_recovery(cfg, results, runs_dir)
    if exceptions is not None:
        atomic_write(out_dir / "exceptions.csv", exceptions.write_csv)
    text = summary_markdown(cfg, results, slices, exceptions)
    atomic_write(out_dir / "summary.md", lambda p: p.write_text(text))
    plots(cfg, results, slices, out_dir)
