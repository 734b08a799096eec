"""The joint-objective arms of widedeep-bench (bench.objectives): opt-in, in every joint cell,
tuned like the joint model, and without any change to the existing arms' runs."""

from __future__ import annotations

import polars as pl
import pytest
from omegaconf import OmegaConf
from test_bench import bench_cfg

from widedeep.experiment.plan import (
    NONE,
    OBJECTIVES,
    Model,
    model_config,
    models,
    plan,
)
from widedeep.experiment.runs import NEW_MODEL_KEYS, key_document
from widedeep.training.run import validate

BENCH = {
    "seeds": [0, 1],
    "main": {"wide": "a", "deep": "x"},
    "grid": "axes",
    "sweep": {"wide": [{"name": "a"}, {"name": "b"}], "deep": [{"name": "x"}, {"name": "y"}]},
    "controls": ["ens_deep_deep", "joint_2x", "stagewise_deep_first"],
}


def test_objectives_are_opt_in_and_run_in_every_joint_cell():
    before = plan(BENCH)
    assert not {c.arm for c in before} & set(OBJECTIVES)
    after = plan({**BENCH, "objectives": list(OBJECTIVES)})
    assert [c for c in after if c.arm not in OBJECTIVES] == before  # the same cells, in order
    joint = {(c.seed, c.wide_level, c.deep_level) for c in before if c.arm == "joint"}
    for arm in OBJECTIVES:
        assert {(c.seed, c.wide_level, c.deep_level) for c in after if c.arm == arm} == joint
    with pytest.raises(ValueError, match="bench.objectives: unknown"):
        plan({**BENCH, "objectives": ["joint_magic"]})


def test_a_warm_start_reuses_the_wide_and_deep_arms_runs_and_comes_after_them():
    cells = plan({**BENCH, "seeds": [0], "objectives": ["joint_warm"]})
    todo = models(cells)
    old = models(plan({**BENCH, "seeds": [0]}))
    warm = [m for m in todo if m.variant == "warm"]
    assert len(todo) == len(old) + len(warm)  # no model of its own besides the joint one
    for model in warm:
        for dep in model.dependencies():
            assert dep in old and todo.index(dep) < todo.index(model)
    assert {d.kind for d in warm[0].dependencies()} == {"wide", "deep"}


@pytest.mark.slow
def test_existing_arms_configs_and_keyed_documents_are_unchanged(tmp_path):
    """Every model of the default plan: its keyed config is the one composed without the new
    model keys (as before they existed), and asking for the objectives changes none of it.
    The first (seed, data seed) cell's models only: the others differ from them in the seeds
    alone."""
    cfg = bench_cfg(tmp_path)
    with_objectives = bench_cfg(tmp_path, f"bench.objectives={list(OBJECTIVES)}")
    bench = OmegaConf.to_container(cfg.bench, resolve=True)
    first = (bench["seeds"][0], bench["data_seeds"][0])
    first_cell = [m for m in models(plan(bench)) if (m.seed, m.data_seed) == first]
    assert {m.kind for m in first_cell} == {"wide", "deep", "wide_deep"}
    for model in first_cell:
        init = "some/run/checkpoints/best.ckpt" if model.dependency() else None
        run = model_config(cfg, model, init_from=init)
        doc = key_document(run)["config"]
        assert doc == key_document(model_config(with_objectives, model, init_from=init))["config"]
        older = OmegaConf.to_container(run, resolve=True)
        for key in NEW_MODEL_KEYS:
            del older["model"][key]
        assert doc == key_document(OmegaConf.create(older))["config"], model.name


def test_each_objective_has_its_setting_then_its_tuned_values_then_the_levels(tmp_path):
    cfg = bench_cfg(
        tmp_path,
        "bench.sweep.wide=[{name: l1, overrides: {optim.wide.l1: 0.5}}]",
        "bench.main.wide=l1",
    )
    at = {"seed": 0, "data_seed": None, "wide_level": "l1", "deep_level": cfg.bench.main.deep}
    tuned = {
        ("wide_deep", "per_model"): {"optim.deep.lr": 0.01},
        ("wide_deep", "tower_dropout"): {"optim.deep.lr": 0.02, "optim.wide.l1": 0.1},
    }
    run = model_config(cfg, Model("wide_deep", variant="tower_dropout", **at), tuned)
    assert run.model.tower_dropout == 0.2  # its default, untuned
    assert run.optim.deep.lr == 0.02 and run.optim.wide.l1 == 0.5  # its own tuning; the level
    run = model_config(cfg, Model("wide_deep", variant="aux", **at), tuned)
    assert run.model.aux_loss == 0.5 and run.model.tower_dropout == 0.0
    assert run.optim.deep.lr == cfg.optim.deep.lr  # not the joint arm's tuned setting
    tuned[("wide_deep", "warm")] = {"model.finetune.lr_scale": 0.3}
    members = {"wide": "w/best.ckpt", "deep": "d/best.ckpt"}
    run = model_config(cfg, Model("wide_deep", variant="warm", **at), tuned, members)
    assert run.model.combine and run.model.finetune.lr_scale == 0.3
    assert OmegaConf.to_container(run.model.finetune.hold) == {"wide": 1, "deep": 1}
    assert OmegaConf.to_container(run.model.init_from) == members
    with pytest.raises(ValueError, match="warm start needs its members"):
        model_config(cfg, Model("wide_deep", variant="warm", **at), tuned)
    run = model_config(cfg, Model("wide_deep", variant="per_tower_stop", **at), tuned)
    assert run.model.tower_stop.patience == 1
    for variant in OBJECTIVES.values():
        init = members if variant == "warm" else None
        validate(model_config(cfg, Model("wide_deep", variant=variant, **at), tuned, init))


@pytest.mark.slow
def test_the_objectives_search_spaces_are_inside_the_config(tmp_path):
    from widedeep.experiment.search_space import flatten_space, parse_space

    for optim in ("adam", "paper"):
        cfg = bench_cfg(tmp_path, f"optim={optim}")
        spaces = OmegaConf.to_container(cfg.bench.tune.space, resolve=True)
        for arm in OBJECTIVES:
            params = parse_space(flatten_space(spaces[arm]))
            assert params and all(k.startswith("model.") for k in params)


@pytest.mark.slow
def test_the_objective_arms_end_to_end(tmp_path):
    from widedeep.experiment.harness import bench

    cfg = bench_cfg(
        tmp_path,
        "data.generator.n_rows=4000",
        "bench.seeds=[0]",
        "bench.bootstrap=50",
        "bench.controls=[]",
        "bench.sweep.deep=[{name: small, overrides: {model.deep.hidden: [16]}}]",
        "bench.main.deep=small",
        "bench.tune.trials=1",
        "bench.tune.n_startup_trials=1",
        f"bench.objectives={list(OBJECTIVES)}",
    )
    out = bench(cfg)
    results = pl.read_parquet(out / "results.parquet")
    assert set(OBJECTIVES) <= set(results["arm"])
    for arm in OBJECTIVES:
        assert (out / "tuned" / f"{arm}.yaml").is_file()
        row = results.filter(pl.col("arm") == arm).row(0, named=True)
        assert row["wide_level"] != NONE and row["deep_level"] == "small"
    assert (out / "curves.png").is_file()  # the objectives' curves beside the joint model's
    summary = (out / "summary.md").read_text()
    for arm in OBJECTIVES:
        # a row in the arm table, one in the tower attribution, one per wide level in the
        # size frontier
        levels = results.filter(pl.col("arm") == arm)["wide_level"].n_unique()
        assert levels > 1
        assert summary.count(f"\n| {arm} | ") == 2 + levels, arm
    joint = results.filter(pl.col("arm") == "joint")["params"][0]
    warm = results.filter(pl.col("arm") == "joint_warm")["params"][0]
    assert warm == joint + 2  # the two combination weights
