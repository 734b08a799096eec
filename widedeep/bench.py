"""widedeep-bench: joint training versus an ensemble of separately trained halves.

Per seed it trains the wide arm, the deep arm and the joint model with identical data, features,
budgets and early stopping (`train`), at every capacity level of a sweep, then builds ensembles
of the separately trained halves from their saved predictions, never by retraining:
(a) the mean of probabilities, (b) the mean of logits, (c) a logistic stacker fitted on the
validation predictions only. Runs already finished are reused, so an interrupted benchmark
resumes where it stopped.

    widedeep-bench                                   # synthetic, experiment=joint_vs_ensemble
    widedeep-bench experiment=jve_frappe bench.seeds=[0,1,2]
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .allocator import keep_freed_memory

log = logging.getLogger("widedeep")

ENSEMBLES = ("ens_mean_prob", "ens_mean_logit", "ens_stack")


@dataclass(frozen=True)
class Run:
    """One training run of the plan: an arm at a wide and a deep capacity level."""

    seed: int
    kind: str  # wide | deep | wide_deep
    wide_level: str  # "-" where the arm has no wide tower
    deep_level: str  # "-" where the arm has no deep tower

    @property
    def path(self) -> str:
        return f"seed{self.seed}/{self.kind}/w={self.wide_level},d={self.deep_level}"


def _levels(bench: Mapping[str, Any], tower: str) -> dict[str, dict[str, Any]]:
    levels = {lv["name"]: dict(lv.get("overrides") or {}) for lv in bench["sweep"][tower]}
    if not levels:
        raise ValueError(f"bench.sweep.{tower} needs at least one level")
    return levels


def plan(bench: Mapping[str, Any]) -> list[Run]:
    """Every run the benchmark needs. Joint models run at each pair of levels (``grid: full``)
    or along both axes through the main levels (``grid: axes``)."""
    wide, deep = _levels(bench, "wide"), _levels(bench, "deep")
    main_w, main_d = bench["main"]["wide"], bench["main"]["deep"]
    if main_w not in wide or main_d not in deep:
        raise ValueError(f"bench.main names levels {main_w!r}/{main_d!r} not in bench.sweep")
    runs = []
    for seed in bench["seeds"]:
        runs += [Run(seed, "wide", w, "-") for w in wide]
        runs += [Run(seed, "deep", "-", d) for d in deep]
        for w in wide:
            for d in deep:
                if bench.get("grid", "axes") == "full" or w == main_w or d == main_d:
                    runs.append(Run(seed, "wide_deep", w, d))
    return runs


def run_config(cfg: Any, run: Run, runs_dir: Path) -> Any:
    """The training config of one run: the shared config plus the run's kind, seed and levels."""
    from omegaconf import OmegaConf

    bench = cfg.bench
    out = copy.deepcopy(cfg)
    OmegaConf.set_struct(out, False)
    out.pop("bench")
    out.model.kind = run.kind
    out.seed = run.seed
    out.output_dir = str(runs_dir / run.path)
    for tower, level in (("wide", run.wide_level), ("deep", run.deep_level)):
        if level != "-":
            for key, value in _levels(bench, tower)[level].items():
                OmegaConf.update(out, key, value, merge=False)
    OmegaConf.set_struct(out, True)
    return out


def execute(cfg: Any, runs_dir: Path) -> None:
    """Train every planned run that has no metrics.json yet."""
    from .train import train

    runs = plan(cfg.bench)
    for k, run in enumerate(runs, 1):
        if (runs_dir / run.path / "metrics.json").exists():
            continue
        log.info("bench run %d/%d: %s", k, len(runs), run.path)
        train(run_config(cfg, run, runs_dir))


# -- ensembles ------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def scores(label: np.ndarray, logit: np.ndarray) -> dict[str, float]:
    """Test AUC and log loss. AUC is undefined (NaN) when the rows hold one class only (on
    Frappe, pairs seen often in training are all clicks); both are NaN for no rows."""
    from sklearn.metrics import log_loss, roc_auc_score

    if len(label) == 0:
        return {"auc": math.nan, "logloss": math.nan}
    prob = np.clip(_sigmoid(logit), 1e-7, 1 - 1e-7)
    both = 0 < np.mean(label) < 1
    return {
        "auc": float(roc_auc_score(label, logit)) if both else math.nan,
        "logloss": float(log_loss(label, prob, labels=[0, 1])),
    }


def ensemble_logits(wide: pl.DataFrame, deep: pl.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Ensembles of two runs' saved predictions -> {ensemble: {split: logits}} and labels.

    The stacker (weights for both logits + a bias) is fitted on the validation split only and
    then applied to the test split.
    """
    from sklearn.linear_model import LogisticRegression

    both = wide.select("split", "row_id", "label", pl.col("logit").alias("z_wide")).join(
        deep.select("split", "row_id", pl.col("logit").alias("z_deep")),
        on=["split", "row_id"],
        how="inner",
        validate="1:1",
    )
    if both.height != wide.height or both.height != deep.height:
        raise ValueError("ensemble: the two runs' predictions do not cover the same rows")
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in (*ENSEMBLES, "label")}
    valid = both.filter(pl.col("split") == "valid")
    stacker = LogisticRegression(C=1e4, max_iter=1000)
    stacker.fit(valid.select("z_wide", "z_deep").to_numpy(), valid["label"].to_numpy())
    for split in ("valid", "test"):
        part = both.filter(pl.col("split") == split).sort("row_id")
        zw, zd = part["z_wide"].to_numpy(), part["z_deep"].to_numpy()
        mean_prob = np.clip((_sigmoid(zw) + _sigmoid(zd)) / 2, 1e-7, 1 - 1e-7)
        out["ens_mean_prob"][split] = np.log(mean_prob / (1 - mean_prob))
        out["ens_mean_logit"][split] = (zw + zd) / 2
        out["ens_stack"][split] = stacker.decision_function(np.stack([zw, zd], 1))
        out["label"][split] = part["label"].to_numpy()
    return out


# -- the results table ----------------------------------------------------------------------


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


# -- statistics -----------------------------------------------------------------------------


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean, and the half-width of its t confidence interval and the std over seeds."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1) * std / math.sqrt(len(x)))
    return float(x.mean()), half, std


def paired(results: pl.DataFrame, a: str, b: str, wide: str, deep: str) -> dict[str, float]:
    """Test-AUC difference a - b over seeds at the given levels, paired by seed."""

    def at(arm: str) -> pl.DataFrame:
        lv = {"wide": (wide, "-"), "deep": ("-", deep)}.get(arm, (wide, deep))
        return results.filter(
            (pl.col("arm") == arm)
            & (pl.col("wide_level") == lv[0])
            & (pl.col("deep_level") == lv[1])
        ).select("seed", "test_auc")

    diff = at(a).join(at(b), on="seed", suffix="_b")
    mean, half, std = mean_ci((diff["test_auc"] - diff["test_auc_b"]).to_list())
    return {"mean": mean, "ci95": half, "std": std, "n": diff.height}


def smallest_within(results: pl.DataFrame, arm: str, tolerance: float = 0.001) -> dict[str, Any]:
    """The configuration with the fewest parameters whose mean test AUC is within ``tolerance``
    of the arm's best configuration."""
    per = (
        results.filter(pl.col("arm") == arm)
        .group_by("wide_level", "deep_level")
        .agg(pl.col("test_auc").mean(), pl.col("params").mean(), pl.col("nonzero_params").mean())
        .sort("params")
    )
    best = per["test_auc"].max()
    pick = per.filter(pl.col("test_auc") >= best - tolerance).row(0, named=True)
    return {**pick, "best_auc": best}


# -- entry point ----------------------------------------------------------------------------


def bench(cfg: Any) -> Path:
    """Run (or resume) the plan, then write results, summary and plots; returns the out dir."""
    from .report import write_report

    runs_dir = Path(cfg.bench.runs_dir)
    out_dir = Path(cfg.bench.out_dir)
    execute(cfg, runs_dir)
    results = collect(cfg, runs_dir)
    write_report(cfg, results, runs_dir, out_dir)
    return out_dir


def _hydra_entry(cfg: Any) -> None:
    from .errors import report_user_error

    try:
        keep_freed_memory()  # before the runs' first batch; idempotent
        print(f"widedeep-bench: results in {bench(cfg)}")
    except Exception as err:
        sys.exit(report_user_error("widedeep-bench", err))


def main() -> None:
    import hydra

    hydra.main(version_base="1.3", config_path="conf", config_name="bench")(_hydra_entry)()


def levels_table(bench_cfg: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(tower, level, overrides) rows, for the report."""
    for tower in ("wide", "deep"):
        for name, overrides in _levels(bench_cfg, tower).items():
            text = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(defaults)"
            yield tower, name, text


if __name__ == "__main__":
    main()
