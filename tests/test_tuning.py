"""Tuning: search spaces, a study that resumes after a kill as if never stopped, the best of
the first n trials, pruning through train(), and widedeep-tune end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from widedeep.experiment.search_space import parse_space, suggest  # noqa: E402
from widedeep.experiment.tuning import best_of_first, hydra_value, sqlite_url, tune  # noqa: E402

SPACE = {
    "optim": {"wide": {"l1": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}},
    "model.deep.dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "model.deep.embedding_dim": {"type": "int", "low": 4, "high": 32, "log": True},
    "data.batch_size": {"type": "int", "low": 256, "high": 1024, "step": 256},
    "model.deep.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    "model.deep.hidden": {"type": "categorical", "choices": [[128], [256, 128]]},
}
# A cheap, deterministic objective that reports a curve, so the median pruner has work to do.
OBJECTIVE = """
import math, optuna

def objective(params, trial):
    quality = -abs(math.log10(params["optim.wide.l1"]) + 2) - params["model.deep.dropout"]
    quality += 0.01 * len(params["model.deep.hidden"]) + 0.001 * params["data.batch_size"] / 256
    for step in range(3):
        trial.report(quality + 0.1 * step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return quality + 0.3
"""
namespace: dict = {}
exec(OBJECTIVE, namespace)
objective = namespace["objective"]


def test_every_spec_type_draws_in_range_and_lists_round_trip():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        values = suggest(study.ask(), SPACE)
        assert list(values) == [
            "optim.wide.l1",
            "model.deep.dropout",
            "model.deep.embedding_dim",
            "data.batch_size",
            "model.deep.activation",
            "model.deep.hidden",
        ]
        assert 1e-4 <= values["optim.wide.l1"] <= 0.1
        assert round(values["model.deep.dropout"] * 10, 6).is_integer()
        assert isinstance(values["model.deep.embedding_dim"], int)
        assert values["data.batch_size"] in (256, 512, 768, 1024)
        assert values["model.deep.activation"] in ("relu", "tanh")
        seen.add(tuple(values["model.deep.hidden"]))
    assert seen == {(128,), (256, 128)}  # lists, as the config needs them, both drawn
    parsed = parse_space(SPACE)["model.deep.hidden"]
    assert parsed.encoded and parsed.choices == ("[128]", "[256, 128]")  # what Optuna stores
    assert not parse_space(SPACE)["model.deep.activation"].encoded


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "floot", "low": 0, "high": 1}, "type='floot'"),
        ({"type": "float", "low": 1, "high": 0.5}, "must be < high"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "log=true needs low > 0"),
        ({"type": "int", "low": 1.5, "high": 4}, "low and high must be ints"),
        ({"type": "float", "lo": 0, "high": 1}, "unknown field(s) ['lo']"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical", "choices": [[1], [1]]}, "repeat"),
        (0.5, "expected a spec"),
    ],
)
def test_a_bad_spec_is_one_line_naming_its_key(spec, message):
    with pytest.raises(ValueError) as err:
        parse_space({"optim": {"deep": {"lr": spec}}})
    text = str(err.value)
    assert text.startswith("search space optim.deep.lr: ") and message in text
    assert "\n" not in text


def test_hydra_values_parse_back():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in [0.001, 1e-05, 3, True, None, "relu", "a b", [256, 128], {"user": 16}, "null"]:
        parsed = parser.parse_override(f"k={hydra_value(value)}").value()
        assert parsed == value, (value, hydra_value(value))


STUDY_SCRIPT = (
    OBJECTIVE
    + """
import os, sys
from widedeep.experiment.tuning import sqlite_url, tune

db, kill_at = sys.argv[1], int(sys.argv[2])
calls = 0

def dying(params, trial):
    global calls
    calls += 1
    if calls == kill_at:
        trial.report(0.0, 0)
        os._exit(17)  # no cleanup: the trial stays RUNNING in the storage, as after SIGKILL
    return objective(params, trial)

tune("s", SPACE, dying, trials=4, storage=sqlite_url(db), seed=7, n_startup_trials=2)
"""
)


def run_study(db: Path, kill_at: int = 0) -> int:
    script = f"SPACE = {SPACE!r}\n" + STUDY_SCRIPT
    done = subprocess.run(
        [sys.executable, "-c", script, str(db), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 17), done.stderr[-3000:]
    return done.returncode


def sequence(db: Path) -> list[tuple]:
    study = optuna.load_study(study_name="s", storage=sqlite_url(db))
    return [
        (t.params, t.state.name, t.value, t.intermediate_values)
        for t in study.trials
        if t.state != optuna.trial.TrialState.FAIL
    ]


@pytest.mark.slow
def test_a_study_killed_in_trial_3_resumes_into_the_uninterrupted_sequence(tmp_path):
    whole, broken = tmp_path / "whole.db", tmp_path / "broken.db"
    assert run_study(whole) == 0
    assert run_study(broken, kill_at=3) == 17
    killed = optuna.load_study(study_name="s", storage=sqlite_url(broken)).trials
    assert [t.state.name for t in killed] == ["COMPLETE", "COMPLETE", "RUNNING"]
    assert run_study(broken) == 0  # the resume: marks trial 2 failed, runs it again, then 3

    resumed = optuna.load_study(study_name="s", storage=sqlite_url(broken))
    assert [t.state.name for t in resumed.trials].count("FAIL") == 1
    assert resumed.trials[2].state.name == "FAIL"
    assert resumed.trials[3].params == resumed.trials[2].params
    assert resumed.trials[3].user_attrs["widedeep:retry_of"] == 2  # re-run, not re-drawn
    assert sequence(broken) == sequence(whole)
    assert len(sequence(whole)) == 4
    study = optuna.load_study(study_name="s", storage=sqlite_url(whole))
    assert best_of_first(resumed, 4).params == best_of_first(study, 4).params
    assert best_of_first(resumed, 4).value == best_of_first(study, 4).value


@pytest.mark.slow
def test_the_first_n_trials_of_a_study_are_an_n_trial_study(tmp_path):
    url = sqlite_url(tmp_path / "t.db")
    long = tune("long", SPACE, objective, trials=8, storage=url, seed=5, n_startup_trials=2)
    short = tune("short", SPACE, objective, trials=4, storage=url, seed=5, n_startup_trials=2)
    assert long.complete + long.pruned == 8 and long.pruned > 0  # the pruner took part
    assert long.best.number >= 4  # so the best of the first 4 is not simply the best
    assert best_of_first(long.study, 4) == short.best
    trace = [(t.params, t.state, t.value) for t in long.study.trials[:4]]
    assert trace == [(t.params, t.state, t.value) for t in short.study.trials]
    assert best_of_first(long.study, 8) == long.best
    with pytest.raises(ValueError, match="has 8 finished trials, not 9"):
        best_of_first(long.study, 9)


@pytest.mark.slow
def test_a_rerun_adds_only_missing_trials_and_refuses_other_settings(tmp_path):
    url = sqlite_url(tmp_path / "t.db")
    first = tune("s", SPACE, objective, trials=3, storage=url, n_startup_trials=2)
    again = tune("s", SPACE, objective, trials=3, storage=url, n_startup_trials=2)
    assert (first.new, again.new, again.best) == (3, 0, first.best)
    more = tune("s", SPACE, objective, trials=5, storage=url, n_startup_trials=2)
    assert more.new == 2 and more.complete + more.pruned == 5
    assert tune("s", SPACE, objective, trials=3, storage=url, n_startup_trials=2).best == first.best
    with pytest.raises(ValueError, match="was started with seed=0, now 1"):
        tune("s", SPACE, objective, trials=5, storage=url, seed=1, n_startup_trials=2)


@pytest.mark.slow
def test_an_objective_that_returns_nan_stops_the_study_instead_of_looping(tmp_path):
    with pytest.raises(ValueError, match="objective returned nan"):
        tune("s", SPACE, lambda p, t: float("nan"), 3, storage=sqlite_url(tmp_path / "t.db"))


TINY = [
    "data.generator.n_rows=3000",
    "trainer.max_epochs=2",
    "trainer.patience=5",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=512",
]


def study_with_a_bar(value: float) -> optuna.Study:
    """A study whose one earlier trial reached ``value`` at every epoch: the median to beat."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1))
    bar = optuna.trial.create_trial(value=value, intermediate_values={0: value, 1: value})
    study.add_trial(bar)
    return study


@pytest.mark.slow
def test_the_pruning_callback_prunes_a_losing_run_and_lets_a_winning_one_finish(tmp_path):
    from widedeep.cli.config import compose_config
    from widedeep.training.pruning import PruningCallback
    from widedeep.training.run import train

    losing = study_with_a_bar(1.0)  # no run beats AUC 1: pruned after its first epoch
    trial = losing.ask()
    cfg = compose_config([*TINY, "model=wide"], output_dir=str(tmp_path / "pruned"))
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        train(cfg, extra_callbacks=[PruningCallback(trial, "val/auc")])
    assert not (tmp_path / "pruned" / "metrics.json").exists()
    assert list(losing.trials[-1].intermediate_values) == [0]

    winning = study_with_a_bar(0.0)
    trial = winning.ask()
    cfg = compose_config([*TINY, "model=wide"], output_dir=str(tmp_path / "finished"))
    metrics = train(cfg, extra_callbacks=[PruningCallback(trial, "val/auc")])
    assert (tmp_path / "finished" / "metrics.json").exists()
    # One report per fitted epoch; not one more from the validate() after the fit.
    reported = winning.trials[-1].intermediate_values
    assert list(reported) == [0, 1]
    assert max(reported.values()) == pytest.approx(metrics["val"]["auc"])


def tune_command(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "widedeep.cli.tune", *extra, f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_widedeep_tune_reports_a_bad_space_in_one_line(tmp_path):
    done = tune_command(tmp_path, "tune.space.deep.optim.deep.lr.low=0")
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("widedeep-tune: error: search space optim.deep.lr: log=true needs low > 0")
    )


@pytest.mark.slow
def test_widedeep_tune_writes_a_best_setting_whose_command_composes(tmp_path):
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config

    args = [*TINY, "model=deep", "optim=paper", "tune.trials=3", "tune.n_startup_trials=1"]
    done = tune_command(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "widedeep-tune: best val auc" in done.stdout
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["command"].startswith("widedeep-train ") and best["command"] in done.stdout
    assert "++optim.deep.embedding_l2=" in best["command"]  # a key optim/paper.yaml lacks
    assert set(best["params"]) == {"optim.deep.lr", "optim.deep.embedding_l2", "model.deep.dropout"}
    # The command retrains exactly the best trial's config.
    rerun = compose_config(best["overrides"], output_dir="x")
    trial = OmegaConf.load(tmp_path / "trials" / str(best["trial"]) / "config.yaml")
    rerun.output_dir = trial.output_dir
    assert OmegaConf.to_container(rerun, resolve=True) == OmegaConf.to_container(trial)
    assert not any("tune" in o for o in best["overrides"])
    metrics = json.loads((tmp_path / "trials" / str(best["trial"]) / "metrics.json").read_text())
    assert metrics["val"]["auc"] == best["value"]
    # The same command again resumes the finished study: nothing new to train.
    again = tune_command(tmp_path, *args)
    assert again.returncode == 0 and "0 new" in again.stdout


def test_the_optuna_sweeper_example_composes():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["experiment=optuna_sweep"], return_hydra_config=True
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert {"optim.wide.lr", "optim.deep.lr", "model.deep.dropout"} <= set(sweeper.params)


@pytest.mark.slow
def test_widedeep_train_sweeps_with_hydra_optuna_and_maximises_validation_auc(tmp_path):
    import json
    import subprocess
    import sys

    args = [
        "-m",
        "experiment=optuna_sweep",
        "hydra.sweeper.n_trials=3",
        "data.generator.n_rows=3000",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}/sweep",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "widedeep.cli.train", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(runs) == 3
    best = max(json.loads(p.read_text())["val"]["auc"] for p in runs)
    output = result.stdout + result.stderr
    reported = float(output.split("Best value:")[-1].split()[0])
    assert reported == pytest.approx(best)  # the sweeper maximised validation AUC
    optimization = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "optim.wide.lr" in optimization


@pytest.mark.parametrize("kind", ["NonFiniteLossError", "DivergedLossError"])
def test_a_diverged_trial_is_pruned_and_the_study_goes_on(kind):
    """A sampled learning rate that diverges (NaN, or the trainer.divergence rule) is a bad
    trial: pruned, never the best; the next trials still run."""
    import optuna

    from widedeep.experiment.tuning_runs import trial_score
    from widedeep.training import module

    def objective(trial):
        lr = trial.suggest_float("lr", 0.0, 1.0)

        def train_run(callbacks):
            if trial.number == 1:
                raise getattr(module, kind)(f"training loss diverged at lr {lr}")
            return {"val": {"auc": 0.5 + lr / 10}}

        return trial_score(train_run, trial)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    done, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert states == [done, pruned, done]
    assert study.best_trial.number != 1
