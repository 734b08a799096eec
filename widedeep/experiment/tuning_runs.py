"""Tuning one arm with real training runs: each trial is a `train` run on the configured data,
scored on the validation split and pruned at validation epoch ends. ``widedeep-tune`` is
`tune_arm`; a harness that tunes several arms calls `arm_space` and `train_objective` itself.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from widedeep.experiment.search_space import flatten_space
from widedeep.experiment.tuning import TuneResult, sqlite_url, tune, write_best

log = logging.getLogger("widedeep")

# The spaces (tune.space.<name>) each model kind searches: the joint model both towers'.
ARM_SPACES = {"wide": ("wide",), "deep": ("deep",), "wide_deep": ("wide", "deep")}


def arm_space(space: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The flat search space ``{key: spec}`` for ``model.kind=kind`` from ``tune.space``."""
    if kind not in ARM_SPACES:
        raise ValueError(f"model.kind={kind!r}: no search space (one of {sorted(ARM_SPACES)})")
    flat: dict[str, dict[str, Any]] = {}
    for name in ARM_SPACES[kind]:
        if name not in space:
            raise ValueError(f"tune.space.{name} is missing: model.kind={kind} searches it")
        flat.update(flatten_space(space[name]))
    return flat


def new_keys(cfg: DictConfig, params: Sequence[str]) -> list[str]:
    """The searched keys ``cfg`` lacks (e.g. optim.deep.embedding_l2): Hydra adds them with ++."""
    missing = object()
    return [k for k in params if OmegaConf.select(cfg, k, default=missing) is missing]


def trial_config(cfg: DictConfig, params: Mapping[str, Any], output_dir: Path) -> DictConfig:
    """``cfg`` with the trial's values set, writing to ``output_dir``: what ``widedeep-train``
    composes from the base overrides plus `tuning.overrides(params)` (the end-to-end test
    checks that), without the ``tune`` node."""
    run = copy.deepcopy(cfg)
    with open_dict(run):
        run.pop("tune", None)
        for key, value in params.items():
            OmegaConf.update(run, key, value, merge=False, force_add=True)
        run.output_dir = str(output_dir)
    return run


def trial_score(
    train_run: Callable[[Sequence[Any]], dict[str, Any]], trial: Any, monitor: str = "auc"
) -> float:
    """Train one trial's run, ``train_run(extra_callbacks) -> metrics``, pruned at validation
    epoch ends, and return its validation score: ``trainer.monitor`` of the best epoch (val AUC
    by default; the test split is never looked at to choose)."""
    import optuna

    from widedeep.training.module import DivergedLossError, NonFiniteLossError
    from widedeep.training.pruning import PruningCallback

    try:
        metrics = train_run([PruningCallback(trial, f"val/{monitor}")])
    except (NonFiniteLossError, DivergedLossError) as err:
        # A diverged setting (a NaN loss, or one far above the constant predictor's: the
        # trainer.divergence rule) is a bad trial, not a broken study: it counts, never wins.
        raise optuna.TrialPruned(f"diverged: {err}") from None
    val = metrics["val"]
    return val["auc"] - val["logloss"] if monitor == "auc_minus_logloss" else val["auc"]


def train_objective(cfg: DictConfig, runs_dir: Path) -> Callable[[dict[str, Any], Any], float]:
    """``objective(params, trial)`` for `tuning.tune`: train ``cfg`` with the trial's values in
    ``runs_dir/<trial number>`` and return its `trial_score`."""
    from widedeep.training.run import train

    def objective(params: dict[str, Any], trial: Any) -> float:
        run = trial_config(cfg, params, Path(runs_dir) / str(trial.number))
        return trial_score(lambda callbacks: train(run, callbacks), trial, cfg.trainer.monitor)

    return objective


def train_overrides(task_overrides: Sequence[str]) -> list[str]:
    """The command line's overrides that ``widedeep-train`` takes too: all but tune's."""
    kept = []
    for item in task_overrides:
        key = item.lstrip("~+").split("=", 1)[0]
        if not (key == "tune" or key.startswith(("tune.", "tune/"))):
            kept.append(item)
    return kept


def tune_arm(cfg: DictConfig, base_overrides: Sequence[str] = ()) -> tuple[TuneResult, Path, str]:
    """Tune ``cfg.model.kind`` as ``cfg.tune`` says, trials in ``<output_dir>/trials/<n>``;
    write ``<output_dir>/best.yaml``. Returns the result, that file and its command line."""
    if cfg.trainer.strategy != "auto" or cfg.trainer.devices != 1 or cfg.trainer.num_nodes != 1:
        raise ValueError(
            "widedeep-tune trains each trial in one process: trainer.strategy=auto, devices=1,"
            " num_nodes=1 (run several tuners on one storage instead, tune.shared=true)"
        )
    settings = cfg.tune
    out = Path(cfg.output_dir)
    space = arm_space(OmegaConf.to_container(settings.space, resolve=True), cfg.model.kind)
    result = tune(
        study_name=settings.study_name,
        space=space,
        objective=train_objective(cfg, out / "trials"),
        trials=settings.trials,
        storage=settings.storage or sqlite_url(out / "tune.db"),
        seed=settings.sampler.seed,
        pruner=settings.pruner,
        n_startup_trials=settings.n_startup_trials,
        shared=settings.shared,
        # Resuming with other training settings would mix two searches in one study.
        attrs={"train_overrides": sorted(base_overrides)},
    )
    path = out / "best.yaml"
    command = write_best(
        path, result.best, base_overrides, new_keys(cfg, space), settings.study_name
    )
    return result, path, command
