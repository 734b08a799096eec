"""The joint-vs-ensemble report: the primary comparison first, then every arm and control
against it, the sweep's family of comparisons (Holm), size, attribution, slices and plots;
with the commit, versions and protocol the numbers came from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.core.io import atomic_write
from widedeep.experiment.comparisons import PRIMARY, compare, sweep_family
from widedeep.experiment.plan import frontier_arms, levels_of, levels_table, reported_arms
from widedeep.experiment.plots import plots
from widedeep.experiment.results import Measured
from widedeep.experiment.slices import exception_recovery, slice_labels, slice_table
from widedeep.experiment.stats import mean_ci, smallest_within


def _fmt(mean: float, spread: float, digits: int = 4) -> str:
    if math.isnan(spread):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _auc(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _diff(row: dict[str, Any]) -> str:
    if not row.get("n"):
        return "n/a"
    text = f"{row['mean']:+.4f} ± {row['ci']:.4f} (t p={row['p']:.3g}, n={row['n']})"
    if "boot_low" in row:
        low, high = row["boot_low"], row["boot_high"]
        text += f"; bootstrap [{low:+.4f}, {high:+.4f}], p={row['boot_p']:.3g}"
    return text


def _at(results: pl.DataFrame, arm: str, w: str, d: str) -> pl.DataFrame:
    lw, ld = levels_of(arm, w, d)
    return results.filter(
        (pl.col("arm") == arm) & (pl.col("wide_level") == lw) & (pl.col("deep_level") == ld)
    )


def _protocol(cfg: Any, measured: Measured) -> list[str]:
    b, t = cfg.bench, measured.table
    tune = b.get("tune") or {}
    trials = int(tune.get("trials", 0))
    budget = (
        f"wide, deep and joint at the settings tuned in {tune.get('fixed')}; each joint "
        f"objective tuned here with {trials} trials on split A (Optuna TPE, pruning on "
        "validation AUC), the budget each of those had"
        if trials and tune.get("fixed")
        else f"each of wide, deep and joint tuned with {trials} trials on split A (Optuna TPE, "
        "pruning on validation AUC): equal trials per trained model; the equal-total reading "
        f"(each ensemble member {trials // 2} trials) is the arm ens_best_equal_total"
        if trials
        else f"no tuning here: every kind at the settings tuned in {tune.get('fixed')}"
        if tune.get("fixed")
        else "no tuning: every kind at the config's settings"
    )
    versions = json.loads(t["versions"][0])
    stopped = t["stopped_early"].sum()
    return [
        f"# Joint vs ensemble: {cfg.data.name}",
        "",
        f"- commit: {', '.join(sorted(set(','.join(t['commit']).split(','))))}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- seeds {list(b.seeds)} x "
        + (f"data splits {list(b.data_seeds)}" if b.data_seeds else "the configured data split")
        + f"; main levels "
        f"wide={b.main.wide}, deep={b.main.deep}",
        f"- validation split into A (early stopping, tuning) and B (ratio "
        f"{b.selection.ratio}: stackers, the joint refit, choosing ensembles); test rows "
        "inform no choice",
        f"- {budget}",
        f"- epoch cap {cfg.trainer.max_epochs} (joint_2x: twice that and twice the patience "
        f"{cfg.trainer.patience}); early stopping ended {stopped} of {t.height} cells' runs, "
        "the cap the others (best epoch / epochs in `results.csv`)",
        "",
    ]


def _primary(cfg: Any, measured: Measured) -> list[str]:
    b = cfg.bench
    w, d = b.main.wide, b.main.deep
    row = compare(measured, *PRIMARY, w, d, n_boot=int(b.get("bootstrap", 0)))
    return [
        "## Primary comparison (named before the runs; uncorrected)",
        "",
        f"joint − ens_best in test AUC at the main levels: {_diff(row)}",
        "",
    ]


def _arm_table(cfg: Any, measured: Measured) -> list[str]:
    b, t = cfg.bench, measured.table
    w, d = b.main.wide, b.main.deep
    lines = [
        "## Every arm at the main levels, and against the primary pair",
        "",
        "| arm | test AUC | test log loss | valid B AUC | params | non-zero | train s | "
        "epochs (best), first cell | − joint | − ens_best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in reported_arms(b):
        part = _at(t, arm, w, d)
        if part.is_empty():
            continue
        auc, ll = mean_ci(part["test_auc"].to_list()), mean_ci(part["test_logloss"].to_list())
        vs = [
            _diff(compare(measured, arm, other, w, d)) if arm != other else "—"
            for other in PRIMARY
        ]
        lines.append(
            f"| {arm} | {_fmt(auc[0], auc[2])} | {_fmt(ll[0], ll[2])} | "
            f"{part['valid_b_auc'].mean():.4f} | {part['params'].mean():,.0f} | "
            f"{part['nonzero_params'].mean():,.0f} | {part['train_time_s'].mean():.1f} | "
            f"{part['epochs'][0]} ({part['best_epoch'][0]}) | {vs[0]} | {vs[1]} |"
        )
    lines += ["", "Means ± std over (data split, seed); differences: mean ± 95% t half-width.", ""]
    return lines


def _points(table: pl.DataFrame, arm: str) -> list[tuple[str, str]]:
    """The (wide, deep) levels an arm ran at."""
    part = table.filter(pl.col("arm") == arm)
    return sorted(set(zip(part["wide_level"], part["deep_level"], strict=True)))


def _sweep(cfg: Any, measured: Measured) -> list[str]:
    family = sweep_family(measured, _points(measured.table, "joint"))
    lines = ["## joint − ens_best across the sweep (Holm-adjusted over the cells)", ""]
    if family.is_empty():
        return [*lines, "(fewer than two seeds per cell)", ""]
    lines += ["| wide | deep | difference | p | p (Holm) |", "|---|---|---|---|---|"]
    for r in family.iter_rows(named=True):
        lines.append(
            f"| {r['wide_level']} | {r['deep_level']} | {r['mean']:+.4f} ± {r['ci']:.4f} | "
            f"{r['p']:.3g} | {r['p_holm']:.3g} |"
        )
    return [*lines, ""]


def _objective_sweep(cfg: Any, measured: Measured) -> list[str]:
    """Each joint objective − ens_best at every wide level it ran at (a size sweep with the
    objectives), Holm-adjusted over the levels of each objective."""
    families: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for arm in cfg.bench.get("objectives") or ():
        points = _points(measured.table, arm)
        if len(points) < 2:
            continue
        rows = sweep_family(measured, points, a=arm).iter_rows(named=True)
        if family := {(r["wide_level"], r["deep_level"]): r for r in rows}:
            families[arm] = family
    if not families:
        return []
    lines = [
        "## Each joint objective − ens_best across the sweep (Holm-adjusted over its cells)",
        "",
        "| wide | deep | " + " | ".join(families) + " |",
        "|---|---|" + "---|" * len(families),
    ]
    for w, d in sorted({p for f in families.values() for p in f}):
        cells = [f.get((w, d)) for f in families.values()]
        text = [
            "n/a" if r is None else f"{r['mean']:+.4f} ± {r['ci']:.4f} (Holm p {r['p_holm']:.2g})"
            for r in cells
        ]
        lines.append(f"| {w} | {d} | " + " | ".join(text) + " |")
    return [*lines, ""]


def _size(cfg: Any, measured: Measured) -> list[str]:
    b, t = cfg.bench, measured.table
    lines = [
        "## Size",
        "",
        "| arm | fewest non-zero within 0.001 split-B AUC of its best on B | params | non-zero "
        "| its test AUC | test AUC of the best on B |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ("joint", "ens_best"):
        s = smallest_within(t, arm)
        lines.append(
            f"| {arm} | w={s['wide_level']}, d={s['deep_level']} | {s['params']:,.0f} "
            f"| {s['nonzero_params']:,.0f} | {s['test_auc']:.4f} | {s['best_auc']:.4f} |"
        )
    lines += [
        "",
        f"Wide tower non-zero weights, alone vs jointly (deep={b.main.deep}; mean over cells):",
        "",
        "| wide level | alone | joint |",
        "|---|---|---|",
    ]
    for _, level, _ in (row for row in levels_table(b) if row[0] == "wide"):
        alone = _at(t, "wide", level, b.main.deep)
        joint = _at(t, "joint", level, b.main.deep)
        if alone.is_empty() or joint.is_empty():  # bench.grid=main: the main level only
            continue
        alone_n, joint_n = alone["wide_nonzero"].mean(), joint["wide_nonzero"].mean()
        lines.append(f"| {level} | {alone_n:,.0f} | {joint_n:,.0f} |")
    ran = {*t["wide_level"], *t["deep_level"]}
    lines += ["", "Levels:", ""]
    lines += [f"- {tower} `{n}`: {text}" for tower, n, text in levels_table(b) if n in ran]
    if measured.tuned:
        lines += ["", "Tuned settings (split A):", ""]
        lines += [
            f"- {kind} ({budget}): " + ", ".join(f"{k}={v}" for k, v in s.items())
            for (kind, budget), s in sorted(measured.tuned.items())
        ]
    return [*lines, ""]


def frontier(cfg: Any, results: pl.DataFrame, tolerance: float = 0.001) -> pl.DataFrame:
    """Per arm (`frontier_arms`) and wide level at the main deep level: mean non-zero cross
    weights, split-B and test AUC; ``chosen`` marks the level with the fewest non-zero cross
    weights whose split-B AUC is within ``tolerance`` of the arm's full-size (main) level."""
    b = cfg.bench
    rows = (
        results.filter(pl.col("arm").is_in(frontier_arms(b)))
        .filter(pl.col("deep_level") == b.main.deep)
        .group_by("arm", "wide_level")
        .agg(
            pl.col("wide_cross_nonzero").mean().alias("cross_nonzero"),
            pl.col("valid_b_auc").mean(),
            pl.col("test_auc").mean(),
            pl.col("test_auc").std().alias("test_auc_std"),
            pl.len().alias("cells"),
        )
        # Ties in size go to the higher split-B AUC, then the name: group_by's order is not
        # stable, and the first level within tolerance is the one chosen.
        .sort(
            ["arm", "cross_nonzero", "valid_b_auc", "wide_level"],
            descending=[False, False, True, False],
        )
    )
    full = rows.filter(pl.col("wide_level") == b.main.wide).select(
        "arm", pl.col("valid_b_auc").alias("full_b")
    )
    rows = rows.join(full, on="arm", how="left")
    within = pl.col("valid_b_auc") >= pl.col("full_b") - tolerance
    first = within & (within.cum_sum().over("arm") == 1)
    return rows.with_columns(first.alias("chosen")).drop("full_b")


def _frontier(cfg: Any, measured: Measured) -> list[str]:
    table = frontier(cfg, measured.table)
    if table.filter(pl.col("arm") == "joint").height < 2:
        return []
    lines = [
        "## Size frontier: test AUC against non-zero cross weights",
        "",
        f"At deep={cfg.bench.main.deep}; cross weights counted apart from the raw fields' "
        "per-id weights. **chosen**: the fewest non-zero cross weights within 0.001 split-B "
        f"AUC of the arm's full-size wide part ({cfg.bench.main.wide}), chosen on B.",
        "",
        "| arm | wide level | non-zero cross weights | valid B AUC | test AUC | |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {r['arm']} | {r['wide_level']} | {r['cross_nonzero']:,.0f} | "
            f"{r['valid_b_auc']:.4f} | {_fmt(r['test_auc'], r['test_auc_std'] or math.nan)} | "
            f"{'**chosen**' if r['chosen'] else ''} |"
        )
    return [*lines, ""]


def _attribution(cfg: Any, measured: Measured) -> list[str]:
    b, t = cfg.bench, measured.table
    lines = [
        "## Tower attribution (test rows, main levels)",
        "",
        "Share: Cov(z_tower, z) / Var(z), the towers' shares sum to 1; drop: test AUC lost when "
        "the tower's logit is replaced by its mean.",
        "",
        "| arm | wide share | deep share | AUC drop without wide | without deep |",
        "|---|---|---|---|---|",
    ]
    for arm in reported_arms(b):
        part = _at(t, arm, b.main.wide, b.main.deep).drop_nulls("share_wide")
        if part.is_empty():
            continue
        lines.append(
            f"| {arm} | {part['share_wide'].mean():.3f} | {part['share_deep'].mean():.3f} | "
            f"{part['auc_drop_wide'].mean():.4f} | {part['auc_drop_deep'].mean():.4f} |"
        )
    k = [a for a in reported_arms(b) if a.startswith("deep_k")]
    if k:
        lines += ["", "Deep-only ensembles of K members (mean of logits):", ""]
        lines += ["| K | test AUC |", "|---|---|"]
        for arm in k:
            auc = mean_ci(_at(t, arm, b.main.wide, b.main.deep)["test_auc"].to_list())
            lines.append(f"| {arm.removeprefix('deep_k')} | {_fmt(auc[0], auc[2])} |")
    return [*lines, ""]


def _slices(cfg: Any, slices: pl.DataFrame, exceptions: pl.DataFrame | None) -> list[str]:
    b = cfg.bench
    lines = [
        f"## Frequency slices ({', '.join(b.slices.fields)} in training)",
        "",
        "AUC is n/a where a slice holds one class only; log loss per arm is in `slices.csv`.",
        "",
        "| slice | rows | click rate | wide AUC | deep AUC | joint AUC | ens_best AUC | "
        "joint: wide share | deep share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    agg = slices.group_by("slice", "arm", maintain_order=True).agg(
        pl.col("rows").mean(), pl.col("click_rate").mean(), pl.col("auc").mean(),
        pl.col("share_wide").mean(), pl.col("share_deep").mean(),
    )
    for name in slice_labels(list(b.slices.edges)):
        row = {r["arm"]: r for r in agg.filter(pl.col("slice") == name).iter_rows(named=True)}
        if not row:
            continue
        j = row["joint"]
        lines.append(
            f"| {name} | {j['rows']:,.0f} | {j['click_rate']:.3f} | "
            + " | ".join(_auc(row[a]["auc"]) for a in ("wide", "deep", "joint", "ens_best"))
            + f" | {j['share_wide']:.3f} | {j['share_deep']:.3f} |"
        )
    if exceptions is not None:
        lines += [
            "",
            "## Planted exceptions recovered (Platt-calibrated on split B; slope of the logit "
            "on the true effect, 1 = all)",
            "",
            "| model | recovered (mean ± std) |",
            "|---|---|",
        ]
        for name in exceptions["model"].unique(maintain_order=True):
            v = mean_ci(exceptions.filter(pl.col("model") == name)["recovered"].to_list())
            lines.append(f"| {name} | {_fmt(v[0], v[2], 3)} |")
    return [*lines, ""]


def summary_markdown(
    cfg: Any, measured: Measured, slices: pl.DataFrame, exceptions: pl.DataFrame | None
) -> str:
    parts = [
        _protocol(cfg, measured),
        _primary(cfg, measured),
        _arm_table(cfg, measured),
        _sweep(cfg, measured),
        _objective_sweep(cfg, measured),
        _size(cfg, measured),
        _frontier(cfg, measured),
        _attribution(cfg, measured),
        _slices(cfg, slices, exceptions),
    ]
    return "\n".join(line for part in parts for line in part)


def write_report(cfg: Any, measured: Measured, out_dir: Path) -> None:
    """results.{parquet,csv}, slices.csv, exceptions.csv (synthetic), tuned.json, summary.md
    and the plots, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = measured.table
    atomic_write(out_dir / "results.parquet", results.write_parquet)
    atomic_write(out_dir / "results.csv", results.write_csv)
    slices = slice_table(cfg, measured)
    atomic_write(out_dir / "slices.csv", slices.write_csv)
    exceptions = exception_recovery(cfg, measured)
    if exceptions is not None:
        atomic_write(out_dir / "exceptions.csv", exceptions.write_csv)
    tuned = {f"{kind}/{budget}": s for (kind, budget), s in measured.tuned.items()}
    atomic_write(out_dir / "tuned.json", lambda p: p.write_text(json.dumps(tuned, indent=2)))
    text = summary_markdown(cfg, measured, slices, exceptions)
    atomic_write(out_dir / "summary.md", lambda p: p.write_text(text))
    plots(cfg, measured, slices, out_dir, frontier(cfg, results))
