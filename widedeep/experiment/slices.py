"""Where the arms differ: AUC by how often a row's fields occurred in training, and how
much of the synthetic log's planted exception effect each model recovered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from widedeep.experiment.ensembles import ensemble_logits, scores
from widedeep.experiment.plan import Run, run_config


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
    from widedeep.data.pipeline import load_data

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
    from widedeep.data.pipeline import load_data

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
