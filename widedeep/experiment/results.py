"""The tidy results table of a benchmark: one row per arm, seed, level."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.experiment.ensembles import ENSEMBLES, ensemble_logits, scores
from widedeep.experiment.plan import Run, plan


def _metrics(runs_dir: Path, run: Run) -> dict[str, Any]:
    path = runs_dir / run.path / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"bench: run {run.path} has no metrics.json (not trained yet?)")
    return json.loads(path.read_text())


def collect(cfg: Any, runs_dir: Path) -> pl.DataFrame:
    """The tidy table: one row per (arm, seed, wide level, deep level), ensembles included."""
    bench = cfg.bench
    rows = []
    runs = plan(bench)
    for run in runs:
        m = _metrics(runs_dir, run)
        arm = {"wide_deep": "joint"}.get(run.kind, run.kind)
        rows.append(
            _row(
                cfg,
                run.seed,
                arm,
                run.wide_level,
                run.deep_level,
                m["test"],
                m["val"],
                m["params"]["total"],
                m["params"]["wide_nonzero"] + m["params"]["deep"] + 1,
                m["params"]["wide_nonzero"],
                m["fit_time_s"],
            )
        )
    for run in (r for r in runs if r.kind == "wide_deep"):
        w, d = (
            Run(run.seed, "wide", run.wide_level, "-"),
            Run(run.seed, "deep", "-", run.deep_level),
        )
        mw, md = _metrics(runs_dir, w), _metrics(runs_dir, d)
        preds = [pl.read_parquet(runs_dir / r.path / "predictions.parquet") for r in (w, d)]
        logits = ensemble_logits(*preds)
        best, best_val = None, -1.0
        for name in ENSEMBLES:
            test = scores(logits["label"]["test"], logits[name]["test"])
            val = scores(logits["label"]["valid"], logits[name]["valid"])
            params = mw["params"]["total"] + md["params"]["total"]
            nonzero = mw["params"]["wide_nonzero"] + 1 + md["params"]["deep"] + 1
            row = _row(
                cfg,
                run.seed,
                name,
                run.wide_level,
                run.deep_level,
                test,
                val,
                params,
                nonzero,
                mw["params"]["wide_nonzero"],
                mw["fit_time_s"] + md["fit_time_s"],
            )
            rows.append(row)
            # The best ensemble is chosen on validation AUC, never on test.
            if val["auc"] > best_val:
                best, best_val = row, val["auc"]
        rows.append({**best, "arm": "ens_best", "ensemble": best["arm"]})
    return pl.DataFrame(rows, infer_schema_length=None)


def _row(
    cfg: Any,
    seed: int,
    arm: str,
    wide_level: str,
    deep_level: str,
    test: Mapping,
    val: Mapping,
    params: int,
    nonzero: int,
    wide_nonzero: int,
    train_s: float,
) -> dict:
    return {
        "dataset": cfg.data.name,
        "arm": arm,
        "seed": seed,
        "wide_level": wide_level,
        "deep_level": deep_level,
        "params": params,
        "nonzero_params": nonzero,
        "wide_nonzero": wide_nonzero,
        "test_auc": test["auc"],
        "test_logloss": test["logloss"],
        "val_auc": val["auc"],
        "train_time_s": train_s,
        "ensemble": None,
    }
