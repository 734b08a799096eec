"""The plan of the joint-vs-ensemble benchmark: which runs to train, and each run's config.

Per seed the wide arm, the deep arm and the joint model train with identical data, features,
budgets and early stopping (`widedeep.training.run.train`), at every capacity level of a sweep;
the ensembles of the separately trained halves are built afterwards from their saved
predictions (`widedeep.experiment.ensembles`), never by retraining. Runs already finished are
reused, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("widedeep")


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
    from widedeep.training.run import train

    runs = plan(cfg.bench)
    for k, run in enumerate(runs, 1):
        if (runs_dir / run.path / "metrics.json").exists():
            continue
        log.info("bench run %d/%d: %s", k, len(runs), run.path)
        train(run_config(cfg, run, runs_dir))


def levels_table(bench_cfg: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(tower, level, overrides) rows, for the report."""
    for tower in ("wide", "deep"):
        for name, overrides in _levels(bench_cfg, tower).items():
            text = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(defaults)"
            yield tower, name, text
