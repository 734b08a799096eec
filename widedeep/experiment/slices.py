"""Where the arms differ: AUC by how often a row's fields occurred in training, each tower's
share of the joint logit there, and how much of the synthetic log's planted exception effect
each model recovered (after Platt calibration on split B).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from widedeep.experiment.arms import scores
from widedeep.experiment.attribution import platt_scale, variance_shares
from widedeep.experiment.plan import Cell, Model, data_seeds, levels_of, model_config
from widedeep.experiment.results import Measured

SLICE_ARMS = ("wide", "deep", "joint", "ens_best")


def slice_labels(edges: list[int]) -> list[str]:
    """[5, 50] -> ["unseen", "1-5", "6-50", ">50"]."""
    labels, low = ["unseen"], 1
    for edge in edges:
        labels.append(f"{low}-{edge}")
        low = edge + 1
    return [*labels, f">{edges[-1]}"]


def frequency_slices(data: Any, fields: list[str], edges: list[int]) -> np.ndarray:
    """Slice label per test row of ``data`` (a `ProcessedData`): how often its combination of
    ``fields`` occurred in training. Ids 0/1 (missing, or rarer than min_count) are unseen."""
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


def _data(cfg: Any, measured: Measured, data_seed: int | None) -> Any:
    """The processed data of one data split, as the joint model at the main levels saw it
    (loaded once per report, for the slices and the exceptions alike)."""
    from omegaconf import OmegaConf

    from widedeep.data.pipeline import load_data

    if data_seed not in measured.datasets:
        b = cfg.bench
        model = Model("wide_deep", 0, data_seed, b.main.wide, b.main.deep)
        data_cfg = OmegaConf.to_container(model_config(cfg, model).data, resolve=True)
        measured.datasets[data_seed] = load_data(data_cfg)
    return measured.datasets[data_seed]


def _main_cell(arm: str, cfg: Any, data_seed: int | None, seed: int) -> Cell:
    return Cell(arm, seed, data_seed, *levels_of(arm, cfg.bench.main.wide, cfg.bench.main.deep))


def _joint_towers(measured: Measured, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """The joint model's test tower logits, in row order."""
    (model,) = cell.members()
    test = measured.frame(model).filter(pl.col("split") == "test").sort("row_id")
    return test["wide_logit"].to_numpy(), test["deep_logit"].to_numpy()


def slice_table(cfg: Any, measured: Measured) -> pl.DataFrame:
    """AUC and log loss per arm and frequency slice; for the joint model, each tower's
    centred variance share of its logit in the slice."""
    sl = cfg.bench.slices
    rows = []
    for data_seed in data_seeds(cfg.bench):
        labels = frequency_slices(_data(cfg, measured, data_seed), list(sl.fields), list(sl.edges))
        for seed in cfg.bench.seeds:
            outs = {a: measured.outputs[_main_cell(a, cfg, data_seed, seed)] for a in SLICE_ARMS}
            zw, zd = _joint_towers(measured, _main_cell("joint", cfg, data_seed, seed))
            for name in slice_labels(list(sl.edges)):
                mask = labels == name
                y = outs["joint"].label["test"][mask]
                shares = variance_shares(zw[mask], zd[mask]) if mask.sum() > 1 else {}
                for arm, out in outs.items():
                    s = scores(y, out.logit["test"][mask])
                    joint = arm == "joint"
                    rows.append(
                        {
                            "data_seed": data_seed,
                            "seed": seed,
                            "slice": name,
                            "arm": arm,
                            "rows": int(mask.sum()),
                            "click_rate": float(y.mean()) if mask.any() else math.nan,
                            "auc": s["auc"],
                            "logloss": s["logloss"],
                            "share_wide": shares.get("wide", math.nan) if joint else math.nan,
                            "share_deep": shares.get("deep", math.nan) if joint else math.nan,
                        }
                    )
    return pl.DataFrame(rows)


def exception_recovery(cfg: Any, measured: Measured) -> pl.DataFrame | None:
    """Synthetic data only: how much of the planted exception effect each model recovered.

    Each model's logit is first Platt-calibrated on split B, so that a model that is merely
    over- or under-confident is not credited or blamed. On test rows that replay an exception,
    the OLS slope of the calibrated logit on the planted effect (+-3, signs independent of
    everything else) is the share recovered: 1 = all, 0 = none. The joint model's towers are
    scaled by the joint logit's calibration slope.
    """
    if cfg.data.name != "synthetic":
        return None
    rows = []
    for data_seed in data_seeds(cfg.bench):
        extras = _data(cfg, measured, data_seed).extras["test"]
        effect = extras["exception_effect"].to_numpy()
        mask = extras["is_exception"].to_numpy()
        for seed in cfg.bench.seeds:
            found = {}
            for arm in SLICE_ARMS:
                out = measured.outputs[_main_cell(arm, cfg, data_seed, seed)]
                calibrated, fit = platt_scale(
                    out.logit["valid_b"], out.label["valid_b"], out.logit["test"]
                )
                found[arm] = calibrated
                if arm == "joint":
                    zw, zd = _joint_towers(measured, _main_cell(arm, cfg, data_seed, seed))
                    found["joint_wide"], found["joint_deep"] = fit.coef[0] * zw, fit.coef[0] * zd
            for name, logit in found.items():
                slope = np.polyfit(effect[mask], logit[mask], 1)[0]
                rows.append(
                    {"data_seed": data_seed, "seed": seed, "model": name, "recovered": slope}
                )
    return pl.DataFrame(rows)
