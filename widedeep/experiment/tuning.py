"""Hyperparameter search (issue 14, "equal tuning budgets"): a resumable and deterministic
Optuna study over a search space (`search_space`), the best of a study's first n trials, and
the chosen setting written out as a ``widedeep-train`` command. docs/tuning.md has the story.

Determinism: Optuna keeps no sampler state in its storage, so each trial gets a fresh TPE
sampler seeded with ``seed + index``, its index in the study's sequence of finished (complete
or pruned) trials. A trial's parameters are then a function of the stored history before it
and its index alone: a study killed and resumed samples what an uninterrupted one samples, and
the first n trials of a longer study are exactly an n-trial study.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from widedeep.core.io import atomic_write
from widedeep.experiment.search_space import decode, parse_space, suggest

log = logging.getLogger("widedeep")

PRUNERS = ("median", "hyperband", "none")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward the budget
SETTINGS_ATTR = "widedeep:settings"
# Several workers on one study: a trial whose worker has not beaten for GRACE_S is stale.
HEARTBEAT_S, GRACE_S = 60, 180


@dataclass(frozen=True)
class Best:
    number: int  # the Optuna trial number
    value: float
    params: dict[str, Any]  # config overrides {key: value}


@dataclass(frozen=True)
class TuneResult:
    study: optuna.Study
    storage: str
    best: Best
    complete: int
    pruned: int
    new: int  # trials this call ran


def sqlite_url(path: Path | str) -> str:
    """The SQLAlchemy URL of a SQLite file (absolute, so a later cwd finds the same file)."""
    return f"sqlite:///{Path(path).resolve()}"


def _storage(url: str, shared: bool) -> optuna.storages.RDBStorage:
    if not shared:
        return optuna.storages.RDBStorage(url)
    # Heartbeats tell a live worker's trial from a dead one's; the dead one's parameters are
    # queued again (RetryFailedTrialCallback), as _retry_abandoned does for one worker.
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3),
    )


def _pruner(name: str, n_startup_trials: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so stored and new settings compare."""
    return json.loads(json.dumps(value))


def _shown(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _check_settings(study: optuna.Study, settings: dict[str, Any], url: str) -> None:
    """A study resumed with other settings would not be the study it claims to be."""
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    for field in sorted(set(stored) | set(settings)):
        if stored.get(field) != settings.get(field):
            raise ValueError(
                f"study {study.study_name!r} in {_shown(url)} was started with {field}="
                f"{stored.get(field)!r}, now {settings.get(field)!r}: use another study name "
                "or storage for a new search"
            )


def _retry_abandoned(study: optuna.Study, space: Mapping[str, Any]) -> None:
    """One worker: a trial still RUNNING was left by a process that died (killed, out of
    memory). Mark it failed and queue its parameters again, so the sequence is unchanged."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        # A trial killed before all its parameters were drawn is re-sampled instead: the same
        # seed and history give the same values, where a partial queue would shift the draws.
        if set(trial.params) == set(parse_space(space)):
            study.enqueue_trial(trial.params, user_attrs={"widedeep:retry_of": trial.number})
        log.warning("trial %d was left running by a stopped process: run again", trial.number)


def tune(
    study_name: str,
    space: Mapping[str, Any],
    objective: Callable[[dict[str, Any], optuna.Trial], float],
    trials: int,
    storage: str | None = None,
    seed: int = 0,
    pruner: str = "median",
    n_startup_trials: int = 5,
    shared: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> TuneResult:
    """Maximise ``objective(params, trial)`` over ``space`` until the study holds ``trials``
    finished (complete or pruned) trials; runs only the ones still missing. The result is
    about the study's first ``trials`` finished trials (a longer study's prefix).

    ``storage``: a SQLAlchemy URL (default: SQLite ``./tune.db``); a PostgreSQL or MySQL URL
    lets several machines work on one study, each calling this with ``shared=True`` (their
    trials then interleave, so the sequence is no longer reproducible). ``pruner``: median
    (default), hyperband or none; ``n_startup_trials``: random trials before TPE, and complete
    trials before the median pruner prunes. ``attrs``: more settings the study must keep (e.g.
    the training overrides): resuming with other settings, ``seed`` or space is an error.
    The objective reports intermediate values to ``trial`` and raises ``optuna.TrialPruned``
    (`widedeep.training.pruning.PruningCallback` does both); any other exception stops the
    study, with the trial marked failed and not counted.
    """
    space = _plain(dict(space))
    parse_space(space)  # a bad spec fails before the first trial, naming its key
    if not (isinstance(trials, int) and trials >= 1):
        raise ValueError(f"trials={trials!r}: expected an int >= 1")
    if pruner not in PRUNERS:
        raise ValueError(f"pruner={pruner!r}: expected one of {PRUNERS}")
    url = storage or sqlite_url("tune.db")
    rdb = _storage(url, shared)
    study = optuna.create_study(
        study_name=study_name, storage=rdb, direction="maximize", load_if_exists=True
    )
    # The space as pairs: the order of the keys is the order of the draws.
    settings = {"space": list(space.items()), "seed": seed, "pruner": pruner}
    settings = _plain({**settings, "n_startup_trials": n_startup_trials, **(attrs or {})})
    _check_settings(study, settings, url)
    if not shared:
        _retry_abandoned(study, space)

    def run(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        value = float(objective(params, trial))
        if not math.isfinite(value):  # Optuna would record a failure and we would loop on it
            raise ValueError(f"trial {trial.number}: objective returned {value} for {params}")
        return value

    new = 0
    for _ in range(trials):  # each pass finishes one trial or raises: a bound, not the count
        if shared:  # a dead worker's trial must not count as busy (its retry is queued)
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        busy = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done + busy >= trials:
            break
        # Workers that share a study cannot agree on an index: they sample unseeded.
        sampler = optuna.samplers.TPESampler(
            seed=None if shared else seed + done, n_startup_trials=n_startup_trials
        )
        pruning = _pruner(pruner, n_startup_trials)
        study = optuna.load_study(
            study_name=study_name, storage=rdb, sampler=sampler, pruner=pruning
        )
        study.optimize(run, n_trials=1, catch=())
        new += 1
    # The result covers the first `trials` finished trials, however many the study holds.
    finished = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    finished = finished[:trials]
    return TuneResult(
        study=study,
        storage=url,
        best=best_of_first(study, len(finished)),
        complete=sum(t.state == TrialState.COMPLETE for t in finished),
        pruned=sum(t.state == TrialState.PRUNED for t in finished),
        new=new,
    )


def best_of_first(study: optuna.Study, n: int) -> Best:
    """The best complete trial among the study's first ``n`` finished ones (by trial number).

    With ``tune``'s seeding these n trials are exactly what an n-trial study samples (pruner
    median or none; hyperband's brackets hash the study name), so one study of 2n trials gives
    both readings of an equal budget: n each for an ensemble's two members, 2n for the joint
    model."""
    finished = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    if len(finished) < n:
        raise ValueError(f"study {study.study_name!r} has {len(finished)} finished trials, not {n}")
    complete = [t for t in finished[:n] if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"study {study.study_name!r}: no complete trial among the first {n}")
    best = max(complete, key=lambda t: (t.value, -t.number))  # a tie goes to the earlier trial
    space = dict(study.user_attrs.get(SETTINGS_ATTR, {}).get("space", []))
    return Best(best.number, float(best.value), decode(space, best.params))


_BARE = re.compile(r"[A-Za-z_][\w./-]*")
_KEYWORDS = {"true", "false", "null", "nan", "inf", "none"}


def hydra_value(value: Any) -> str:
    """``value`` in Hydra's override grammar: ``0.001``, ``[256,128]``, ``'a b'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _BARE.fullmatch(value) and value.lower() not in _KEYWORDS:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Iterable):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a Hydra override")


def overrides(params: Mapping[str, Any], new_keys: Iterable[str] = ()) -> list[str]:
    """``key=value`` per parameter; ``++key=value`` for keys the base config lacks (Hydra
    refuses to set those without the prefix)."""
    new = set(new_keys)
    return [f"{'++' if key in new else ''}{key}={hydra_value(v)}" for key, v in params.items()]


def write_best(
    path: Path,
    best: Best,
    base_overrides: Sequence[str] = (),
    new_keys: Iterable[str] = (),
    study_name: str = "",
    command: str = "widedeep-train",
) -> str:
    """Write the chosen setting to ``path`` (YAML, atomically): its value, trial, parameters,
    the overrides and the exact command line that retrains it. Returns the command."""
    import yaml

    args = [*base_overrides, *overrides(best.params, new_keys)]
    line = " ".join([command, *map(shlex.quote, args)])
    content = {
        "study": study_name,
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "overrides": args,
        "command": line,
    }
    text = f"# The best setting of study {study_name!r}; retrain it with `command`.\n"
    text += yaml.safe_dump(content, sort_keys=False, width=math.inf)  # one line per command
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))
    return line
