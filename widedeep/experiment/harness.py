"""``bench(cfg)``: check the whole plan, tune each kind with the same budget, train (or reuse)
every model, build the arms and write the report.

    plan -> check (in the first second, before any training) -> tune wide / deep / joint on
    split A -> train every model at its kind's tuned setting -> arms from predictions (split
    B fits every combiner) -> report (test rows only measured, never chosen on)
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from widedeep.experiment.plan import (
    NONE,
    OBJECTIVES,
    Cell,
    Model,
    data_seeds,
    levels,
    model_config,
    models,
    plan,
)
from widedeep.experiment.report import write_report
from widedeep.experiment.results import Measured, collect
from widedeep.experiment.runs import RunRecord, RunStore, run_key

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
    if (b.get("tune") or {}).get("trials", 0):
        from widedeep.experiment.search_space import flatten_space, parse_space

        for tower, space in OmegaConf.to_container(b.tune.space, resolve=True).items():
            parse_space(flatten_space(space))
            for key in flatten_space(space):  # optim.deep.embedding_l2 may be new: its parent
                _known_key(cfg, key.rpartition(".")[0], f"bench.tune.space.{tower}")
    fields = list(cfg.data.features.categorical)
    unknown = [f for f in b.slices.fields if f not in fields]
    if unknown:
        raise ValueError(f"bench.slices.fields: {unknown} are not categorical fields {fields}")
    if b.get("data_seeds") is not None and "seed" not in cfg.data.split:
        raise ValueError(
            f"bench.data_seeds: data={cfg.data.name} has no seeded split (data.split.seed)"
        )
    for model in models(cells, int(b.get("k_members", 0))):
        placeholder = _placeholder(model)
        validate(model_config(cfg, model, init_from=placeholder))


def _placeholder(model: Model) -> str | dict[str, str] | None:
    """A stand-in for the runs a model starts from, for checking its config before they exist."""
    if model.variant == "warm":
        return {dep.kind: f"init-from-the-{dep.kind}-member's-run" for dep in model.dependencies()}
    return "init-from-the-frozen-tower's-run" if model.dependency() else None


def _init_from(model: Model, records: dict[Model, RunRecord]) -> str | dict[str, str] | None:
    deps = model.dependencies()
    if model.variant == "warm":
        return {dep.kind: str(records[dep].best_checkpoint) for dep in deps}
    return str(records[deps[0]].best_checkpoint) if deps else None


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
        run_cfg = model_config(cfg, model, tuned, _init_from(model, records))
        sealed = [dep for dep in model.dependencies() if records[dep].sealed]
        if sealed and store.finished(run_cfg) is None:
            # a run to start from is only sealed (no checkpoint): train it into the store
            for dep in sealed:
                records[dep] = store.get(model_config(cfg, dep, tuned), need_checkpoint=True)
            run_cfg = model_config(cfg, model, tuned, _init_from(model, records))
        if run_cfg.trainer.logger == "mlflow":  # unkeyed: the run store ignores it
            OmegaConf.update(run_cfg, "trainer.mlflow.run_name", model.name, force_add=True)
        records[model] = store.get(run_cfg, label=f"bench model {k}/{len(todo)}: {model.name}")
    return records


def _train_overrides(cfg: DictConfig) -> list[str]:
    """What ``widedeep-train`` needs besides the tuned values to retrain a tuned model: the
    bench command line's experiment and non-bench overrides (none outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    hydra = HydraConfig.get()
    keep = [o for o in hydra.overrides.task if not o.lstrip("~+").startswith("bench")]
    experiment = hydra.runtime.choices.get("experiment")
    selection = OmegaConf.to_container(cfg.bench.selection)
    return [f"experiment={experiment}", *keep, f"data.selection={selection}"]


def tune_kinds(
    cfg: DictConfig, store: RunStore, given: dict[tuple[str, str], dict[str, Any]] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Tune wide, deep and joint with the same number of trials on split A, at the main levels
    and the first data split and seed; each trial a store run (so its seeds reuse it). Then
    each joint objective of ``bench.objectives``, with as many trials.

    Returns {(kind, budget): overrides}: ``per_model`` is each study's best; ``equal_total``
    (wide and deep, the ensemble's members) the best of each study's first trials // 2, so the
    two members together get the joint model's budget. A kind in ``given`` (the plain kinds
    of ``bench.tune.fixed``) keeps that setting and is not tuned here."""
    from widedeep.experiment.tuning import best_of_first, sqlite_url, tune, write_best
    from widedeep.experiment.tuning_runs import arm_space, new_keys, trial_score

    b, t = cfg.bench, cfg.bench.tune
    spaces = OmegaConf.to_container(t.space, resolve=True)
    Path(b.store).mkdir(parents=True, exist_ok=True)
    # The studies live beside the sealed runs when there is an archive (they outlive the store).
    home = Path(b.archive) if b.get("archive") else Path(b.store)
    home.mkdir(parents=True, exist_ok=True)
    storage = t.storage or sqlite_url(home / "tuning.db")
    fixed = {k for tower in ("wide", "deep") for k in levels(b, tower)[b.main[tower]]}
    tuned: dict[tuple[str, str], dict[str, Any]] = dict(given or {})
    for kind in ("wide", "deep", "wide_deep"):
        if (kind, "per_model") in tuned:
            continue
        space = {k: v for k, v in arm_space(spaces, kind).items() if k not in fixed}
        w = b.main.wide if kind != "deep" else NONE
        d = b.main.deep if kind != "wide" else NONE
        model = Model(kind, int(b.seeds[0]), data_seeds(b)[0], w, d)

        def objective(params: dict[str, Any], trial: Any, model: Model = model) -> float:
            run_cfg = model_config(cfg, model, {(model.kind, "per_model"): params})
            return trial_score(
                lambda callbacks: store.get(run_cfg, callbacks, seal=False).metrics,
                trial,
                cfg.trainer.monitor,
            )

        base = run_key(model_config(cfg, model))[:12]
        name = f"bench-{cfg.data.name}-{kind}-{base}"
        result = tune(
            name, space, objective, int(t.trials), storage, int(t.sampler.seed),
            pruner=t.pruner, n_startup_trials=int(t.n_startup_trials),
        )
        log.info("bench tuning %s: best val AUC %.4f (%s)", kind, result.best.value, name)
        tuned[(kind, "per_model")] = result.best.params
        if kind != "wide_deep":
            half = best_of_first(result.study, max(1, int(t.trials) // 2))
            tuned[(kind, "equal_total")] = half.params
        overrides = [*_train_overrides(cfg), f"model.kind={kind}"]
        write_best(
            Path(b.out) / "tuned" / f"{kind}.yaml", result.best, overrides,
            new_keys(cfg, list(space)), name,
        )
    for arm in b.get("objectives") or ():
        tuned[("wide_deep", OBJECTIVES[arm])] = _tune_objective(cfg, store, arm, spaces, tuned)
    return tuned


def fixed_kinds(folder: Path, objectives: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every kind at the setting another bench run tuned (``bench.tune.fixed``: that run's
    ``tuned/`` folder of `write_best` files), with no trials of its own: the phase diagram's
    cells all train at one cell's tuned values. There is no equal-total reading then. With
    ``objectives`` empty, the plain kinds only (the objective arms are tuned by the caller)."""
    import yaml

    tuned: dict[tuple[str, str], dict[str, Any]] = {}
    for name in ("wide", "deep", "wide_deep", *objectives):
        path = folder / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"bench.tune.fixed: {path} is missing (a bench run's tuned/ folder)")
        params = (yaml.safe_load(path.read_text()) or {}).get("params")
        if not isinstance(params, dict):
            raise ValueError(f"bench.tune.fixed: {path} has no params mapping")
        kind = "wide_deep" if name in OBJECTIVES else name
        tuned[(kind, OBJECTIVES.get(name, "per_model"))] = params
    return tuned


def _tune_objective(
    cfg: DictConfig,
    store: RunStore,
    arm: str,
    spaces: dict[str, Any],
    tuned: dict[tuple[str, str], dict[str, Any]],
) -> dict[str, Any]:
    """A joint objective's arm tuned like the joint model: the joint space plus the objective's
    own (``tune.space.<arm>``), the same number of trials on split A, at the main levels and the
    first seed. A warm start's trials start from the wide and deep members at their tuned
    settings (the runs the arm's cells use at that seed)."""
    from widedeep.experiment.search_space import flatten_space
    from widedeep.experiment.tuning import sqlite_url, tune, write_best
    from widedeep.experiment.tuning_runs import arm_space, new_keys, trial_score

    b, t = cfg.bench, cfg.bench.tune
    if arm not in spaces:
        raise ValueError(f"bench.tune.space.{arm} is missing: bench.objectives={arm} searches it")
    fixed = {k for tower in ("wide", "deep") for k in levels(b, tower)[b.main[tower]]}
    space = {**arm_space(spaces, "wide_deep"), **flatten_space(spaces[arm])}
    space = {k: v for k, v in space.items() if k not in fixed}
    at = {"seed": int(b.seeds[0]), "data_seed": data_seeds(b)[0]}
    variant = OBJECTIVES[arm]
    levels_at = {"wide_level": b.main.wide, "deep_level": b.main.deep}
    model = Model("wide_deep", **levels_at, variant=variant, **at)
    records = {
        dep: store.get(model_config(cfg, dep, tuned), need_checkpoint=True)
        for dep in model.dependencies()
    }
    init_from = _init_from(model, records)

    def objective(params: dict[str, Any], trial: Any) -> float:
        run_cfg = model_config(cfg, model, {model.tuned_as: params}, init_from)
        return trial_score(
            lambda callbacks: store.get(run_cfg, callbacks, seal=False).metrics,
            trial,
            cfg.trainer.monitor,
        )

    home = Path(b.archive) if b.get("archive") else Path(b.store)
    storage = t.storage or sqlite_url(home / "tuning.db")
    name = f"bench-{cfg.data.name}-{arm}-{run_key(model_config(cfg, model, {}, init_from))[:12]}"
    result = tune(
        name, space, objective, int(t.trials), storage, int(t.sampler.seed),
        pruner=t.pruner, n_startup_trials=int(t.n_startup_trials),
    )
    log.info("bench tuning %s: best val AUC %.4f (%s)", arm, result.best.value, name)
    overrides = [*_train_overrides(cfg), "model.kind=wide_deep"]
    write_best(
        Path(b.out) / "tuned" / f"{arm}.yaml", result.best, overrides, new_keys(cfg, list(space)),
        name,
    )
    return result.best.params


def tracked(cfg: DictConfig) -> DictConfig:
    """Under ``trainer.logger=mlflow``, every run of the bench in one MLflow experiment:
    ``bench-<data.name>`` unless ``trainer.mlflow.experiment`` names another."""
    if cfg.trainer.logger != "mlflow" or OmegaConf.select(cfg, "trainer.mlflow.experiment"):
        return cfg
    out = copy.deepcopy(cfg)
    OmegaConf.update(out, "trainer.mlflow.experiment", f"bench-{cfg.data.name}", force_add=True)
    return out


def measure(cfg: DictConfig) -> Measured:
    """Check, tune, train and collect: everything but the report."""
    cfg = tracked(cfg)
    b = cfg.bench
    cells = plan(b)
    check_plan(cfg, cells)
    archive = Path(b.archive) / "runs" if b.get("archive") else None
    store = RunStore(Path(b.store) / "runs", reuse=bool(b.get("reuse", True)), archive=archive)
    t = b.get("tune") or {}
    trials, objectives = int(t.get("trials", 0)), list(b.get("objectives") or ())
    # With trials and a fixed folder, the plain kinds come from the folder and the objective
    # arms are tuned here (issue 20's arms beside a study that already tuned the others).
    given = fixed_kinds(Path(t.fixed), [] if trials else objectives) if t.get("fixed") else {}
    if given and trials:  # this run's tuned/ folder names every setting it trained at
        (Path(b.out) / "tuned").mkdir(parents=True, exist_ok=True)
        for kind in ("wide", "deep", "wide_deep"):
            shutil.copyfile(Path(t.fixed) / f"{kind}.yaml", Path(b.out) / "tuned" / f"{kind}.yaml")
    tuned = tune_kinds(cfg, store, given) if trials else given
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
    if cfg.trainer.logger == "mlflow":  # the report and its plots beside the runs
        from widedeep.training.tracking import log_folder_run

        log_folder_run(tracked(cfg), "report", out)
    return out
