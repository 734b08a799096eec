"""``bench(cfg)``: check the whole plan, tune each kind with the same budget, train (or reuse)
every model, build the arms and write the report.

    plan -> check (in the first second, before any training) -> tune wide / deep / joint on
    split A -> train every model at its kind's tuned setting -> arms from predictions (split
    B fits every combiner) -> report (test rows only measured, never chosen on)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from widedeep.experiment.plan import Cell, Model, model_config, models, plan
from widedeep.experiment.report import write_report
from widedeep.experiment.results import Measured, collect
from widedeep.experiment.runs import RunRecord, RunStore

log = logging.getLogger("widedeep")
_ABSENT = object()


def _known_key(cfg: DictConfig, key: str, where: str) -> None:
    if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
        raise ValueError(f"{where}: {key!r} is not a key of the training config")


def check_plan(cfg: DictConfig, cells: list[Cell]) -> None:
    """Every mistake the plan can hold, before anything trains: unknown override keys, slice
    fields that are not the dataset's, data seeds without a seeded split, and every model's
    training config through `validate`."""
    from widedeep.training.run import validate

    b = cfg.bench
    if b.get("selection") is None:
        raise ValueError("bench.selection must split validation rows into A and B")
    for tower in ("wide", "deep"):
        for level in b.sweep[tower]:
            for key in level.get("overrides") or {}:
                _known_key(cfg, key, f"bench.sweep.{tower}[{level['name']}]")
    for kind, space in ((b.get("tune") or {}).get("spaces") or {}).items():
        for key in space or {}:
            _known_key(cfg, key, f"bench.tune.spaces.{kind}")
    fields = list(cfg.data.features.categorical)
    unknown = [f for f in b.slices.fields if f not in fields]
    if unknown:
        raise ValueError(f"bench.slices.fields: {unknown} are not categorical fields {fields}")
    if b.get("data_seeds") is not None and "seed" not in cfg.data.split:
        raise ValueError(
            f"bench.data_seeds: data={cfg.data.name} has no seeded split (data.split.seed)"
        )
    for model in models(cells, int(b.get("k_members", 0))):
        placeholder = "init-from-the-frozen-tower's-run" if model.dependency() else None
        validate(model_config(cfg, model, init_from=placeholder))


def train_all(
    cfg: DictConfig,
    cells: list[Cell],
    store: RunStore,
    tuned: dict[tuple[str, str], dict[str, Any]],
) -> dict[Model, RunRecord]:
    """Every model the cells need, each after the run it depends on."""
    records: dict[Model, RunRecord] = {}
    todo = models(cells, int(cfg.bench.get("k_members", 0)))
    for k, model in enumerate(todo, 1):
        dep = model.dependency()
        init_from = str(records[dep].best_checkpoint) if dep is not None else None
        run_cfg = model_config(cfg, model, tuned, init_from)
        state = "reused" if store.finished(run_cfg) else "training"
        log.info("bench model %d/%d: %s (%s)", k, len(todo), model.name, state)
        records[model] = store.get(run_cfg)
    return records


def measure(cfg: DictConfig) -> Measured:
    """Check, tune, train and collect: everything but the report."""
    from widedeep.experiment.tuning_runs import tune_kinds

    b = cfg.bench
    cells = plan(b)
    check_plan(cfg, cells)
    store = RunStore(Path(b.store) / "runs", reuse=bool(b.get("reuse", True)))
    tuned = tune_kinds(cfg, store) if (b.get("tune") or {}).get("trials", 0) else {}
    records = train_all(cfg, cells, store, tuned)
    log.info("bench: %s", store.summary())
    measured = collect(cfg.data.name, cells, records, int(b.get("k_members", 0)))
    measured.tuned = tuned
    return measured


def bench(cfg: DictConfig) -> Path:
    """Run (or resume) the protocol, then write the report under ``bench.out`` (and, with
    ``bench.publish=true``, under ``bench.publish_dir`` too); returns the out dir."""
    measured = measure(cfg)
    out = Path(cfg.bench.out)
    write_report(cfg, measured, out)
    if cfg.bench.get("publish"):
        write_report(cfg, measured, Path(cfg.bench.publish_dir))
    return out
