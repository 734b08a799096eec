"""The joint-vs-ensemble report: tables, frequency slices, exception recovery and plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .bench import (
    Run,
    ensemble_logits,
    levels_table,
    mean_ci,
    paired,
    run_config,
    scores,
    smallest_within,
)
from .io import atomic_write

ARMS = ("wide", "deep", "joint", "ens_mean_prob", "ens_mean_logit", "ens_stack", "ens_best")


def slice_labels(edges: list[int]) -> list[str]:
    """[5, 50] -> ["unseen", "1-5", "6-50", ">50"]."""
    labels, low = ["unseen"], 1
    for edge in edges:
        labels.append(f"{low}-{edge}")
        low = edge + 1
    return [*labels, f">{edges[-1]}"]


def frequency_slices(cfg: Any, fields: list[str], edges: list[int]) -> np.ndarray:
    """Slice label per test row: how often its combination of ``fields`` occurred in training.
    Ids 0/1 (missing, or rarer than the vocabulary's min_count) count as unseen."""
    from .pipeline import load_data

    data = load_data(_to_dict(cfg.data))
    index = [f.name for f in data.schema.categorical]
    unknown = [f for f in fields if f not in index]
    if unknown:
        raise ValueError(f"bench.slices.fields: {unknown} are not categorical fields {index}")

    def keys(split: str) -> tuple[np.ndarray, np.ndarray]:
        ids = data.splits[split].categorical.numpy()[:, [index.index(f) for f in fields]]
        key = np.zeros(len(ids), dtype=np.int64)
        for j, f in enumerate(fields):
            key = key * data.schema.field(f).cardinality + ids[:, j]
        return key, (ids <= 1).any(axis=1)

    train_key, _ = keys("train")
    test_key, unseen = keys("test")
    uniq, counts = np.unique(train_key, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, test_key), 0, len(uniq) - 1)
    count = np.where(uniq[pos] == test_key, counts[pos], 0)
    count[unseen] = 0
    labels = np.array(slice_labels(edges), dtype=object)
    bucket = np.where(count == 0, 0, 1 + np.searchsorted(np.asarray(edges), count, side="left"))
    return labels[bucket]


def _to_dict(node: Any) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def _main_predictions(cfg: Any, results: pl.DataFrame, runs_dir: Path, seed: int) -> dict:
    """Test logits per arm at the main levels for one seed, ensembles included."""
    main_w, main_d = cfg.bench.main.wide, cfg.bench.main.deep
    runs = {
        "wide": Run(seed, "wide", main_w, "-"),
        "deep": Run(seed, "deep", "-", main_d),
        "joint": Run(seed, "wide_deep", main_w, main_d),
    }
    frames = {
        arm: pl.read_parquet(runs_dir / r.path / "predictions.parquet")
        .filter(pl.col("split") == "test")
        .sort("row_id")
        for arm, r in runs.items()
    }
    full = {
        arm: pl.read_parquet(runs_dir / r.path / "predictions.parquet")
        for arm, r in runs.items()
        if arm != "joint"
    }
    ens = ensemble_logits(full["wide"], full["deep"])
    best = results.filter(
        (pl.col("arm") == "ens_best")
        & (pl.col("seed") == seed)
        & (pl.col("wide_level") == main_w)
        & (pl.col("deep_level") == main_d)
    )
    out = {arm: f["logit"].to_numpy() for arm, f in frames.items()}
    out["ens_best"] = ens[best["ensemble"][0]]["test"]
    out["label"] = frames["joint"]["label"].to_numpy()
    out["joint_wide"] = frames["joint"]["wide_logit"].to_numpy()
    out["joint_deep"] = frames["joint"]["deep_logit"].to_numpy()
    return out


def slice_table(cfg: Any, results: pl.DataFrame, runs_dir: Path) -> pl.DataFrame:
    """AUC, log loss and (for the joint model) each tower's mean |logit| per frequency slice."""
    sl = cfg.bench.slices
    data_cfg = run_config(
        cfg, Run(0, "wide_deep", cfg.bench.main.wide, cfg.bench.main.deep), runs_dir / "_slices"
    )
    labels = frequency_slices(data_cfg, list(sl.fields), list(sl.edges))
    rows = []
    for seed in cfg.bench.seeds:
        preds = _main_predictions(cfg, results, runs_dir, seed)
        for name in slice_labels(list(sl.edges)):
            mask = labels == name
            y = preds["label"][mask]
            for arm in ("wide", "deep", "joint", "ens_best"):
                s = scores(y, preds[arm][mask])
                rows.append(
                    {
                        "seed": seed,
                        "slice": name,
                        "arm": arm,
                        "rows": int(mask.sum()),
                        "click_rate": float(y.mean()) if mask.any() else math.nan,
                        "auc": s["auc"],
                        "logloss": s["logloss"],
                        "mean_abs_wide": float(np.abs(preds["joint_wide"][mask]).mean())
                        if arm == "joint" and mask.any()
                        else math.nan,
                        "mean_abs_deep": float(np.abs(preds["joint_deep"][mask]).mean())
                        if arm == "joint" and mask.any()
                        else math.nan,
                    }
                )
    return pl.DataFrame(rows)


def exception_recovery(cfg: Any, results: pl.DataFrame, runs_dir: Path) -> pl.DataFrame | None:
    """Synthetic data only: how much of the planted exception effect each model recovered.

    On test rows that replay an exception, the OLS slope of a logit on the planted effect
    (+-3, signs independent of everything else) is the share recovered: 1 = all, 0 = none.
    """
    if cfg.data.name != "synthetic":
        return None
    from .pipeline import load_data

    data_cfg = run_config(
        cfg, Run(0, "wide_deep", cfg.bench.main.wide, cfg.bench.main.deep), runs_dir / "_slices"
    )
    extras = load_data(_to_dict(data_cfg.data)).extras["test"]
    effect = extras["exception_effect"].to_numpy()
    mask = extras["is_exception"].to_numpy()
    rows = []
    for seed in cfg.bench.seeds:
        preds = _main_predictions(cfg, results, runs_dir, seed)
        for name in ("wide", "deep", "joint", "ens_best", "joint_wide", "joint_deep"):
            slope = np.polyfit(effect[mask], preds[name][mask], 1)[0]
            rows.append({"seed": seed, "model": name, "recovered": float(slope)})
    return pl.DataFrame(rows)


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


def plots(cfg: Any, results: pl.DataFrame, slices: pl.DataFrame, out_dir: Path) -> None:
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
        pl.col("mean_abs_wide").mean(),
        pl.col("mean_abs_deep").mean(),
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
        (("mean_abs_wide", "wide tower"), ("mean_abs_deep", "deep tower"))
    ):
        axes[1].bar(
            x + (k - 0.5) * 0.35,
            [joint.get(s, {}).get(col, math.nan) for s in order],
            0.35,
            label=label,
        )
    axes[1].set_xticks(x, order)
    axes[1].set_xlabel(axes[0].get_xlabel())
    axes[1].set_ylabel("mean |logit| contributed (joint model)")
    axes[1].legend()
    fig.suptitle(
        f"{name}: where memorisation (wide) and generalisation (deep) carry the prediction"
    )
    fig.tight_layout()
    atomic_write(out_dir / "slices.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


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
