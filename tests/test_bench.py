"""The joint-vs-ensemble harness: the plan, config-keyed runs, arms fitted on split B only,
the checks made before anything trains, and one small end-to-end benchmark."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_module
from hydra.errors import HydraException

from widedeep.cli.config import compose_config
from widedeep.experiment.arms import arm_output, scores
from widedeep.experiment.plan import NONE, Cell, Model, model_config, models, plan
from widedeep.experiment.runs import RunStore, run_key
from widedeep.experiment.stats import mean_ci

TINY = ["data.generator.n_rows=3000", "trainer.max_epochs=2", "trainer.progress_bar=false"]
BENCH = {
    "seeds": [0, 1],
    "main": {"wide": "a", "deep": "x"},
    "grid": "axes",
    "sweep": {"wide": [{"name": "a"}, {"name": "b"}], "deep": [{"name": "x"}, {"name": "y"}]},
}


def bench_cfg(tmp_path, *overrides: str):
    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        return compose(
            config_name="bench",
            overrides=[
                *TINY,
                f"bench.store={tmp_path}/store",
                f"bench.out={tmp_path}/out",
                "output_dir=unused",
                *overrides,
            ],
        )


def test_plan_runs_the_joint_arms_on_both_axes_and_the_controls_at_the_main_levels():
    cells = plan({**BENCH, "controls": ["ens_deep_deep", "stagewise_deep_first"]})
    joint = {(c.wide_level, c.deep_level) for c in cells if c.arm == "joint"}
    assert joint == {("a", "x"), ("a", "y"), ("b", "x")}  # axes through the main levels
    controls = {
        (c.arm, c.wide_level, c.deep_level) for c in cells if c.arm.startswith(("st", "ens_d"))
    }
    assert controls == {("ens_deep_deep", "a", "x"), ("stagewise_deep_first", "a", "x")}
    assert Cell("wide", 0, None, "a", NONE) in cells
    main = plan({**BENCH, "grid": "main"})
    assert {(c.wide_level, c.deep_level) for c in main} == {("a", "x"), ("a", NONE), (NONE, "x")}
    with pytest.raises(ValueError, match="bench.grid"):
        plan({**BENCH, "grid": "diagonal"})
    mean, half, std = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0 and half == pytest.approx(4.303 / 3**0.5, rel=1e-3)


def test_models_are_shared_between_arms_and_come_after_what_they_depend_on():
    cells = plan({**BENCH, "seeds": [0], "controls": ["ens_deep_deep", "stagewise_wide_first"]})
    todo = models(cells)
    assert len(todo) == len(set(todo))  # the ensembles reuse the wide and deep arms' runs
    stage = next(m for m in todo if m.variant == "frozen_wide")
    assert todo.index(stage.dependency()) < todo.index(stage)
    second = Model("deep", 0, None, NONE, "x", member=1)
    assert second in todo and second.train_seed == 1000


@pytest.mark.slow
def test_a_run_key_changes_with_what_trains_and_not_with_where_it_is_written():
    base = compose_config(TINY)
    key = run_key(base)
    assert run_key(compose_config(TINY, output_dir="elsewhere")) == key
    assert run_key(compose_config([*TINY, "trainer.logger=none"])) == key
    for change in ("trainer.max_epochs=3", "seed=1", "optim.wide.lr=0.2", "data.batch_size=512"):
        assert run_key(compose_config([*TINY, change])) != key, change


def test_a_run_depends_on_its_own_reader_only():
    from widedeep.experiment.runs import code_digest, digest_files

    names = {p.name for p in digest_files("synthetic")}
    assert {"synthetic.py", "_rows.py", "module.py", "wide.py"} <= names
    assert not {"criteo.py", "libfm.py", "adult.py"} & names
    assert "criteo.py" in {p.name for p in digest_files("some-table")}  # unknown: every reader
    assert code_digest("synthetic") != code_digest("criteo")


@pytest.mark.slow
def test_the_store_reuses_a_finished_run_only_when_its_key_matches(tmp_path):
    store = RunStore(tmp_path)
    first = store.get(compose_config(TINY))
    again = store.get(compose_config(TINY))
    assert not first.reused and again.reused and again.path == first.path
    assert store.summary() == "reused 1 of 2 runs, trained 1"
    changed = store.get(compose_config([*TINY, "trainer.max_epochs=1"]))
    assert not changed.reused and changed.path != first.path
    assert changed.metrics["epochs"] == 1 and first.metrics["epochs"] == 2
    stored = json.loads((first.path / "run.json").read_text())
    assert stored["key"] == first.key and stored["commit"]
    assert stored["document"]["config"]["trainer"]["max_epochs"] == 2
    # reuse=false retrains even a matching run
    assert not RunStore(tmp_path, reuse=False).get(compose_config(TINY)).reused


def _predictions(seed: int, n: int = 300) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.random.default_rng(99).integers(0, 2, 3 * n)  # the same rows for every member
    wide = rng.normal(size=3 * n) + 1.2 * (label - 0.5)
    deep = rng.normal(size=3 * n) + 0.8 * (label - 0.5)
    return pl.DataFrame(
        {
            "row_id": np.tile(np.arange(n), 3),
            "label": label,
            "wide_logit": wide,
            "deep_logit": deep,
            "logit": wide + deep,
            "split": ["valid"] * n + ["valid_b"] * n + ["test"] * n,
        }
    )


@pytest.mark.parametrize("arm", ["ens_stack", "ens_best", "joint_refit", "ens_deep_deep"])
def test_post_hoc_choices_use_split_b_and_never_test_labels(arm):
    frames = [_predictions(0), _predictions(1)][: 1 if arm == "joint_refit" else 2]
    base = arm_output(arm, frames)
    test = pl.col("split") == "test"
    shuffled = [
        f.with_columns(
            pl.when(test).then(pl.col("label").shuffle(seed=5)).otherwise(pl.col("label"))
        )
        for f in frames
    ]
    other = arm_output(arm, shuffled)
    assert other.combiner == base.combiner and other.weights == base.weights
    np.testing.assert_array_equal(other.logit["test"], base.logit["test"])
    assert other.scores()["auc"] != base.scores()["auc"]  # the test labels did change


def test_stacker_and_refit_are_the_linear_maps_fitted_on_split_b():
    frames = [_predictions(0), _predictions(1)]
    stack = arm_output("ens_stack", frames)
    w = np.asarray(stack.weights)
    z = [f.filter(pl.col("split") == "test").sort("row_id")["logit"].to_numpy() for f in frames]
    np.testing.assert_allclose(stack.logit["test"], w[0] * z[0] + w[1] * z[1] + w[2])
    mean = arm_output("ens_mean_logit", frames)
    np.testing.assert_allclose(mean.logit["test"], (z[0] + z[1]) / 2)
    with pytest.raises(ValueError, match="same rows"):
        arm_output("ens_stack", [frames[0], frames[1].head(500)])
    with pytest.raises(ValueError, match="valid_b"):
        arm_output("ens_stack", [f.filter(pl.col("split") != "valid_b") for f in frames])


def test_single_class_slice_has_no_auc_but_a_log_loss():
    logit = np.array([2.0, 0.0, -1.0])
    clicks = scores(np.ones(3), logit)
    assert np.isnan(clicks["auc"])
    expected = -np.mean(np.log(1 / (1 + np.exp(-logit))))
    assert clicks["logloss"] == pytest.approx(expected)
    mixed = scores(np.array([1.0, 0.0, 0.0]), logit)
    assert mixed["auc"] == 1.0
    assert np.isnan(scores(np.array([]), np.array([]))["logloss"])


def test_model_config_applies_tuned_setting_then_levels_then_variant(tmp_path):
    cfg = bench_cfg(
        tmp_path,
        "bench.sweep.wide=[{name: l1, overrides: {optim.wide.l1: 0.5}}]",
        "bench.main.wide=l1",
    )
    tuned = {("wide_deep", "per_model"): {"optim.wide.l1": 0.1, "optim.wide.lr": 0.3}}
    model = Model("wide_deep", 2, None, "l1", cfg.bench.main.deep, variant="2x")
    run = model_config(cfg, model, tuned)
    assert run.optim.wide.l1 == 0.5 and run.optim.wide.lr == 0.3  # the level wins over tuning
    assert run.trainer.max_epochs == 2 * cfg.trainer.max_epochs and run.seed == 2
    assert run.data.selection.ratio == cfg.bench.selection.ratio and "bench" not in run


@pytest.mark.slow
def test_the_plan_is_checked_before_anything_trains(tmp_path):
    from widedeep.experiment.harness import bench

    cases = {
        "bench.slices.fields=[user,nope]": "not categorical fields",
        "bench.sweep.wide=[{name: a, overrides: {optim.wide.l11: 0.1}}]": "optim.wide.l11",
        "bench.selection=null": "bench.selection",  # refused by the schema, as it composes
        "data.batch_size=-1": "data.batch_size",
    }
    for override, message in cases.items():
        extra = ["bench.main.wide=a"] if "sweep.wide" in override else []
        with pytest.raises((ValueError, HydraException), match=message):
            bench(bench_cfg(tmp_path, override, *extra))
    assert not (tmp_path / "store").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    store = RunStore(tmp_path)
    first = store.get(compose_config(TINY))
    (first.path / "metrics.json").unlink()  # killed after its last epoch's checkpoint
    again = store.get(compose_config(TINY))
    assert not again.reused and again.path == first.path
    # resumed at the end of its last epoch: no optimizer step ran again
    assert first.metrics["optimizer_step_time_s"] > 0 == again.metrics["optimizer_step_time_s"]
    assert again.metrics["test"] == first.metrics["test"]


SMALL_BENCH = [
    "data.generator.n_rows=4000",
    "bench.seeds=[0]",
    "bench.data_seeds=null",
    "bench.bootstrap=100",
    "bench.sweep.deep=[{name: small, overrides: {model.deep.hidden: [16]}}]",
    "bench.main.deep=small",
    "bench.sweep.wide=[{name: l1_0, overrides: {optim.wide.l1: 0.0}}]",
    "bench.main.wide=l1_0",
]


def _choices(measured) -> dict:
    """Everything the harness chose: tuned settings, combiners, weights, best epochs."""
    table = measured.table.sort("arm", "seed", "wide_level", "deep_level")
    return {
        "tuned": measured.tuned,
        "rows": table.select("arm", "combiner", "weights", "best_epoch", "epochs").rows(),
    }


@pytest.mark.slow
def test_the_protocol_end_to_end_and_test_labels_change_no_choice(tmp_path, monkeypatch):
    from widedeep.data import pipeline
    from widedeep.experiment.harness import bench, measure
    from widedeep.training import datamodule

    extra = [
        *SMALL_BENCH,
        "bench.tune.trials=2",
        "bench.tune.n_startup_trials=1",
        "bench.k_members=2",
    ]
    cfg = bench_cfg(tmp_path / "a", *extra)
    out = bench(cfg)
    results = pl.read_parquet(out / "results.parquet")
    expected = {
        "wide",
        "deep",
        "joint",
        "joint_refit",
        "ens_best",
        "ens_deep_deep",
        "ens_joint_joint",
        "joint_2x",
        "stagewise_deep_first",
        "stagewise_wide_first",
        "ens_best_equal_total",
        "deep_k1",
        "deep_k2",
    }
    assert expected <= set(results["arm"])
    assert {
        "commit",
        "versions",
        "run_keys",
        "best_epoch",
        "epochs",
        "stopped_early",
        "train_time_s",
        "share_wide",
        "auc_drop_deep",
    } <= set(results.columns)
    joint = results.filter(pl.col("arm") == "joint").row(0, named=True)
    assert joint["share_wide"] + joint["share_deep"] == pytest.approx(1.0)
    for name in (
        "summary.md",
        "slices.csv",
        "exceptions.csv",
        "tuned.json",
        "curves.png",
        "tuned/wide.yaml",
        "tuned/wide_deep.yaml",
    ):
        assert (out / name).exists(), name
    text = (out / "summary.md").read_text()
    assert "## Primary comparison" in text and "bootstrap [" in text and "Holm" in text
    twice = results.filter(pl.col("arm") == "joint_2x")["max_epochs"][0]
    assert twice == 2 * cfg.trainer.max_epochs
    params = {
        r["arm"]: r["params"]
        for r in results.iter_rows(named=True)
        if r["wide_level"] != "-" or r["arm"] == "deep"
    }
    assert params["ens_deep_deep"] == params["deep_k2"] == 2 * params["deep"]
    assert params["deep_k1"] == params["deep"]
    assert params["ens_joint_joint"] == 2 * params["joint"]
    assert params["joint_2x"] == params["stagewise_deep_first"] == params["joint"]
    assert params["ens_best"] == params["joint"] + 1  # two biases: one per member
    # Every run of a second call is reused.
    again = measure(cfg)
    assert again.table.height == results.height
    assert _choices(again) == _choices(measure(cfg))
    # bench.tune.fixed: no trials, every kind at the tuned/ folder's settings: the same
    # training configs as the tuned run (the same run keys), nothing retrained.
    fixed = bench_cfg(
        tmp_path / "a", *SMALL_BENCH, "bench.k_members=2", "bench.tune.trials=0",
        f"bench.tune.fixed={out}/tuned",
    )
    at_fixed = measure(fixed)
    per_model = {k: v for k, v in again.tuned.items() if k[1] == "per_model"}
    assert at_fixed.tuned == per_model
    assert "ens_best_equal_total" not in set(at_fixed.table["arm"])  # no budget to halve
    for arm in expected - {"ens_best_equal_total"}:
        keys = at_fixed.table.filter(pl.col("arm") == arm)["run_keys"].to_list()
        assert keys == results.filter(pl.col("arm") == arm)["run_keys"].to_list(), arm
    # Trials and a fixed folder: the plain kinds at the folder's settings (halved here, so
    # that no tuning of theirs could find them), a joint objective tuned with the trials.
    from widedeep.experiment.tuning import Best, write_best

    elsewhere = {
        key: {k: v / 2 if isinstance(v, float) else v for k, v in params.items()}
        for key, params in per_model.items()
    }
    for (kind, _), params in elsewhere.items():
        best = Best(number=0, value=0.5, params=params)
        write_best(tmp_path / "elsewhere" / f"{kind}.yaml", best)
    mixed = measure(bench_cfg(
        tmp_path / "m", *SMALL_BENCH, "bench.k_members=2", "bench.tune.trials=2",
        f"bench.tune.fixed={tmp_path}/elsewhere", "bench.objectives=[joint_aux]",
    ))
    assert {k: v for k, v in mixed.tuned.items() if k[1] != "aux"} == elsewhere
    assert set(mixed.tuned[("wide_deep", "aux")]) > set(per_model[("wide_deep", "per_model")])
    assert "ens_best_equal_total" not in set(mixed.table["arm"])
    assert {p.name for p in (tmp_path / "m" / "out" / "tuned").iterdir()} == {
        "wide.yaml", "deep.yaml", "wide_deep.yaml", "joint_aux.yaml"}

    # Shuffled test labels, everything else the same, a fresh store: no choice changes.
    real = pipeline.load_data

    def shuffled_test_labels(data_cfg):
        data = real(data_cfg)
        test = data.splits["test"]
        order = np.random.default_rng(0).permutation(len(test))
        test.label = test.label[order]
        return data

    monkeypatch.setattr(datamodule, "load_data", shuffled_test_labels)
    other = measure(bench_cfg(tmp_path / "b", *extra))
    assert _choices(other) == _choices(again)
    assert other.table["test_auc"].to_list() != again.table["test_auc"].to_list()


def _direct(frames: list[pl.DataFrame]) -> dict[str, dict[str, np.ndarray]]:
    """The ensembles of two members' saved predictions, computed here: numpy and sklearn only.
    split -> {label, z (R, 2), ens_mean_prob, ens_mean_logit, ens_stack}."""
    from sklearn.linear_model import LogisticRegression

    out = {}
    for split in ("valid_b", "test"):
        rows = [f.filter(pl.col("split") == split).sort("row_id") for f in frames]
        assert rows[0]["row_id"].to_list() == rows[1]["row_id"].to_list()
        z = np.stack([r["logit"].to_numpy().astype(np.float64) for r in rows], 1)
        prob = (1 / (1 + np.exp(-z))).mean(1)
        out[split] = {
            "label": rows[0]["label"].to_numpy(),
            "z": z,
            "ens_mean_prob": prob,
            "ens_mean_logit": z.mean(1),
        }
    fit = LogisticRegression(penalty=None, tol=1e-10, max_iter=1000)
    fit.fit(out["valid_b"]["z"], out["valid_b"]["label"])
    for split in out:
        out[split]["ens_stack"] = fit.decision_function(out[split]["z"])
    return out


@pytest.mark.slow
def test_the_harness_choices_equal_a_direct_computation_from_the_saved_predictions(tmp_path):
    """Every number the harness reports, recomputed from the members' predictions.parquet with
    sklearn and scipy: single-arm AUCs (and torchmetrics' in metrics.json), the ensembles'
    AUCs, ens_best's choice on split B, and the paired difference with its t-interval."""
    from scipy import stats as scipy_stats
    from sklearn.metrics import roc_auc_score

    from widedeep.experiment.comparisons import compare
    from widedeep.experiment.harness import measure

    cfg = bench_cfg(
        tmp_path, *SMALL_BENCH, "bench.seeds=[0,1]", "bench.controls=[]", "bench.grid=main"
    )
    measured = measure(cfg)
    table = measured.table
    w, d = cfg.bench.main.wide, cfg.bench.main.deep

    def row(arm: str, seed: int) -> dict:
        return table.filter((pl.col("arm") == arm) & (pl.col("seed") == seed)).row(0, named=True)

    def saved(cell_arm: str, seed: int) -> list[pl.DataFrame]:
        cell = next(c for c in measured.outputs if c.arm == cell_arm and c.seed == seed)
        return [pl.read_parquet(measured.records[m].predictions) for m in cell.members()]

    diffs = []
    for seed in (0, 1):
        for arm in ("wide", "deep", "joint"):
            (frame,) = saved(arm, seed)
            test = frame.filter(pl.col("split") == "test")
            direct = roc_auc_score(test["label"].to_numpy(), test["logit"].to_numpy())
            assert row(arm, seed)["test_auc"] == pytest.approx(direct, abs=1e-9), (arm, seed)
            cell = next(c for c in measured.outputs if c.arm == arm and c.seed == seed)
            logged = measured.records[cell.members()[0]].metrics["test"]["auc"]  # torchmetrics
            assert logged == pytest.approx(direct, abs=1e-6), (arm, seed)
        ens = _direct(saved("ens_best", seed))
        b_auc = {
            k: roc_auc_score(ens["valid_b"]["label"], ens["valid_b"][k])
            for k in ("ens_mean_prob", "ens_mean_logit", "ens_stack")
        }
        for k in b_auc:
            direct = roc_auc_score(ens["test"]["label"], ens["test"][k])
            assert row(k, seed)["test_auc"] == pytest.approx(direct, abs=1e-6), (k, seed)
            assert row(k, seed)["valid_b_auc"] == pytest.approx(b_auc[k], abs=1e-6), (k, seed)
        best = max(b_auc, key=b_auc.get)
        assert row("ens_best", seed)["combiner"] == best, (b_auc, seed)
        chosen = roc_auc_score(ens["test"]["label"], ens["test"][best])
        assert row("ens_best", seed)["test_auc"] == pytest.approx(chosen, abs=1e-6)
        joint = row("joint", seed)["test_auc"]
        diffs.append(joint - chosen)
    # The primary comparison: joint - ens_best over the seeds, with its 95% t-interval.
    primary = compare(measured, "joint", "ens_best", w, d)
    assert primary["n"] == 2
    assert primary["mean"] == pytest.approx(np.mean(diffs), abs=1e-6)
    half = scipy_stats.t.ppf(0.975, 1) * np.std(diffs, ddof=1) / np.sqrt(2)
    assert primary["ci"] == pytest.approx(half, abs=1e-6)


@pytest.mark.slow
def test_the_command_line_writes_under_its_output_directory_only(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo_results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    before = {p: p.stat().st_mtime_ns for p in repo_results.rglob("*") if p.is_file()}
    args = [
        *TINY,
        *SMALL_BENCH,
        "bench.controls=[]",
        "hydra.run.dir=report",
        "bench.grid=main",
        "bench.sweep.wide=[{name: l1_0, overrides: {optim.wide.l1: 0.0}}, {name: l1_1}]",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "widedeep.cli.bench", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "report" / "summary.md").is_file()
    assert "reused 0 of" in result.stderr + result.stdout
    after = {p: p.stat().st_mtime_ns for p in repo_results.rglob("*") if p.is_file()}
    assert after == before  # the tracked results are written only with bench.publish=true


def test_the_smallest_configuration_is_chosen_on_split_b_not_test():
    from widedeep.experiment.stats import smallest_within

    rows = [  # level, non-zero, B AUC, test AUC: on test the small one would look as good
        ("big", 1000, 0.800, 0.780),
        ("mid", 500, 0.7995, 0.770),
        ("small", 100, 0.790, 0.781),
    ]
    table = pl.DataFrame(
        [
            {
                "arm": "joint",
                "wide_level": w,
                "deep_level": "d",
                "params": n,
                "nonzero_params": n,
                "valid_b_auc": b,
                "test_auc": t,
            }
            for w, n, b, t in rows
        ]
    )
    pick = smallest_within(table, "joint")
    assert pick["wide_level"] == "mid" and pick["test_auc"] == 0.770  # within 0.001 on B
    assert pick["best_auc"] == 0.780 and pick["best_valid_b_auc"] == 0.800


@pytest.mark.slow
def test_cross_weights_are_counted_apart_from_the_raw_fields(tmp_path):
    from widedeep.experiment.size import wide_nonzero_groups

    store = RunStore(tmp_path)
    run = store.get(compose_config(TINY))
    groups = wide_nonzero_groups(run.best_checkpoint)
    assert groups["crosses"] > 0 and groups["fields"] > 0 and groups["bags"] == 0
    assert groups["fields"] + groups["crosses"] == run.metrics["params"]["wide_nonzero"]
    plain = store.get(compose_config([*TINY, "data.features.crosses=[]"]))
    assert wide_nonzero_groups(plain.best_checkpoint)["crosses"] == 0
    deep = store.get(compose_config([*TINY, "model=deep"]))
    assert wide_nonzero_groups(deep.best_checkpoint) == {"fields": 0, "crosses": 0, "bags": 0}


def test_the_frontier_picks_the_fewest_cross_weights_within_tolerance_on_split_b():
    from omegaconf import OmegaConf

    from widedeep.experiment.report import frontier

    cfg = OmegaConf.create({"bench": {"main": {"wide": "full", "deep": "d"}}})
    rows = [  # level, cross non-zero, B AUC, test AUC (test would prefer "tiny")
        ("full", 5000, 0.800, 0.790),
        ("l1_small", 800, 0.7992, 0.780),
        ("tiny", 10, 0.795, 0.795),
    ]
    table = pl.DataFrame(
        [
            {
                "arm": arm,
                "wide_level": w,
                "deep_level": "d",
                "wide_cross_nonzero": n,
                "valid_b_auc": b,
                "test_auc": t,
            }
            for arm in ("joint", "ens_best")
            for w, n, b, t in rows
        ]
    )
    picked = frontier(cfg, table).filter(pl.col("chosen"))
    assert picked["wide_level"].to_list() == ["l1_small", "l1_small"]


def test_the_frontier_has_a_branch_per_joint_objective_chosen_on_its_own_split_b():
    from omegaconf import OmegaConf

    from widedeep.experiment.report import frontier

    cfg = OmegaConf.create(
        {"bench": {"main": {"wide": "full", "deep": "d"}, "objectives": ["joint_aux"]}}
    )
    b_auc = {  # the objective is within tolerance of its full size only at "tiny"
        "joint": {"full": 0.800, "tiny": 0.790},
        "joint_aux": {"full": 0.800, "tiny": 0.7995},
        "ens_best": {"full": 0.800, "tiny": 0.790},
        "joint_refit": {"full": 0.800, "tiny": 0.800},  # not a frontier arm
    }
    table = pl.DataFrame(
        [
            {
                "arm": arm,
                "wide_level": w,
                "deep_level": "d",
                "wide_cross_nonzero": {"full": 5000, "tiny": 10}[w],
                "valid_b_auc": auc,
                "test_auc": 0.79,
            }
            for arm, levels in b_auc.items()
            for w, auc in levels.items()
        ]
    )
    chosen = dict(frontier(cfg, table).filter(pl.col("chosen")).select("arm", "wide_level").rows())
    assert chosen == {"ens_best": "full", "joint": "full", "joint_aux": "tiny"}


@pytest.mark.slow
def test_the_archive_resumes_a_study_in_a_fresh_store_without_retraining(tmp_path, monkeypatch):
    """A later checkout has the archive (committed) but not the store: it trains nothing, and
    a stagewise run whose frozen tower is only sealed retrains that tower first, to the same
    result."""
    from widedeep.experiment.harness import measure
    from widedeep.training import run as training_run

    extra = [
        *SMALL_BENCH,
        "bench.tune.trials=2",
        "bench.tune.n_startup_trials=1",
        "bench.grid=main",
        "bench.controls=[stagewise_deep_first]",
        f"bench.archive={tmp_path}/archive",
    ]
    first = measure(bench_cfg(tmp_path / "a", *extra))
    sealed = sorted((tmp_path / "archive" / "runs").iterdir())
    assert len(sealed) == len({r.path.name for r in first.records.values()})
    assert not any((run / "checkpoints").exists() for run in sealed)
    splits = pl.read_parquet(sealed[0] / "predictions.parquet")["split"].unique().to_list()
    assert sorted(splits) == ["test", "valid_b"]
    compared = ["arm", "test_auc", "valid_b_auc", "wide_cross_nonzero", "run_keys"]

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the archive holds the run")

    with monkeypatch.context() as patch:
        patch.setattr(training_run, "train", no_training)
        again = measure(bench_cfg(tmp_path / "b", *extra))  # tuning included: 0 new trials
    assert again.table.select(compared).equals(first.table.select(compared))
    assert all(r.sealed for r in again.records.values())

    stagewise = next(
        run
        for run in sealed
        if json.loads((run / "run.json").read_text())["document"]["config"]["model"]["frozen"]
    )
    import shutil

    shutil.rmtree(stagewise)
    third = measure(bench_cfg(tmp_path / "c", *extra))
    retrained = sorted(p.name for p in (tmp_path / "c" / "store" / "runs").iterdir())
    assert len(retrained) == 2 and stagewise.name in retrained  # the frozen tower, then it
    assert third.table.select(compared).equals(first.table.select(compared))


def test_fixed_tuning_reads_every_kind_and_names_a_missing_file(tmp_path):
    from widedeep.experiment.harness import fixed_kinds
    from widedeep.experiment.tuning import Best, write_best

    for i, name in enumerate(("wide", "deep", "wide_deep", "joint_aux")):
        write_best(tmp_path / f"{name}.yaml", Best(number=i, value=0.5, params={"x": i}))
    tuned = fixed_kinds(tmp_path, ["joint_aux"])
    assert tuned == {
        ("wide", "per_model"): {"x": 0},
        ("deep", "per_model"): {"x": 1},
        ("wide_deep", "per_model"): {"x": 2},
        ("wide_deep", "aux"): {"x": 3},
    }
    with pytest.raises(ValueError, match="joint_warm.yaml is missing"):
        fixed_kinds(tmp_path, ["joint_warm"])


def test_the_objective_sweep_gives_each_objective_its_own_holm_family(monkeypatch):
    from omegaconf import OmegaConf

    from widedeep.experiment import report
    from widedeep.experiment.results import Measured

    cfg = OmegaConf.create({"bench": {"objectives": ["joint_aux", "joint_warm"]}})
    table = pl.DataFrame(
        {
            "arm": ["joint_aux", "joint_aux", "joint_warm", "joint_warm", "joint_warm"],
            "wide_level": ["full", "tiny", "full", "tiny", "l1_1"],
            "deep_level": ["d"] * 5,
        }
    )
    seen = {}

    def family(measured, points, a, b="ens_best"):
        seen[a] = sorted(points)
        shift = {"joint_aux": 0.01, "joint_warm": -0.02}[a]
        return pl.DataFrame(
            [
                {"wide_level": w, "deep_level": d, "mean": shift, "ci": 0.001, "p_holm": 0.5}
                for w, d in points
            ]
        )

    monkeypatch.setattr(report, "sweep_family", family)
    lines = report._objective_sweep(cfg, Measured(table=table, outputs={}, records={}))
    assert seen == {
        "joint_aux": [("full", "d"), ("tiny", "d")],
        "joint_warm": [("full", "d"), ("l1_1", "d"), ("tiny", "d")],
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert "+0.0100" in rows["full"] and "-0.0200" in rows["full"]
    assert rows["l1_1"].count("n/a") == 1  # joint_aux never ran at l1_1
    assert report._objective_sweep(
        OmegaConf.create({"bench": {}}), Measured(table=table, outputs={}, records={})
    ) == []


def test_the_frontier_breaks_ties_in_size_the_same_way_whatever_the_row_order():
    from omegaconf import OmegaConf

    from widedeep.experiment.report import frontier

    cfg = OmegaConf.create({"bench": {"main": {"wide": "full", "deep": "d"}}})
    rows = [  # two empty wide parts within tolerance: the higher B AUC is the one named
        {"wide_level": "full", "wide_cross_nonzero": 900, "valid_b_auc": 0.800},
        {"wide_level": "l1_1", "wide_cross_nonzero": 0, "valid_b_auc": 0.7992},
        {"wide_level": "l1_10", "wide_cross_nonzero": 0, "valid_b_auc": 0.7995},
    ]
    table = pl.DataFrame(
        [{"arm": "joint", "deep_level": "d", "test_auc": 0.79, **r} for r in rows]
    )
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]):
        picked = frontier(cfg, table[order]).filter(pl.col("chosen"))
        assert picked["wide_level"].to_list() == ["l1_10"]
