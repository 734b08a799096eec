"""The config schema (widedeep/conf/schema.py): every shipped config composes against it, a
mistyped key is refused with the closest valid key named (also added with ``+``, also inside
an experiment file), name-like values are checked before any data work, and each app's
--help is short and lists the groups."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

import widedeep
from widedeep.cli.config import compose_config
from widedeep.cli.keys import check_keys
from widedeep.conf.schema import DATASETS, DeepTower, Generator, WideTower
from widedeep.training.run import ConfigError, validate

CONF = Path(widedeep.__file__).parent / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def app_of(experiment: str) -> str:
    return "bench" if experiment.startswith(("jve", "joint_vs", "size")) else "train"


@pytest.mark.fast_first
@pytest.mark.parametrize("name", options("data"))
def test_every_data_option_composes_against_its_own_schema(name):
    cfg = compose_config([f"data={name}"])
    # A data option without its schema line would compose untyped, and accept any key.
    assert cfg.data._metadata.object_type is DATASETS[name], f"data/{name}.yaml: no schema"
    validate(cfg)


@pytest.mark.fast_first
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_against_the_schema(experiment):
    """Every experiment composes, every key is in its app's schema, it validates, and a bench
    experiment plans cells."""
    from widedeep.experiment.plan import plan

    app = app_of(experiment)
    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(config_name=app, overrides=[f"experiment={experiment}"])
    check_keys(cfg, app)
    validate(cfg)
    if app == "bench":
        assert plan(cfg.bench), experiment


def test_the_schema_matches_what_the_code_takes():
    from widedeep.data.readers.synthetic import SyntheticConfig
    from widedeep.nn import deep, wide

    names = {f.name for f in dataclasses.fields(Generator)}
    assert names == {f.name for f in dataclasses.fields(SyntheticConfig)}
    for schema, tower in ((DeepTower, deep.DeepTower), (WideTower, wide.WideTower)):
        takes = set(inspect.signature(tower.__init__).parameters)
        assert {f.name for f in dataclasses.fields(schema)} <= takes, schema


@pytest.mark.fast_first
@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("trainer.max_epoch=1", "trainer.max_epochs"),
        ("+trainer.max_epoch=1", "trainer.max_epochs"),  # Hydra's own hint, refused too
        ("model.deep.hiden=[32]", "model.deep.hidden"),
        ("+model.deep.hiden=[32]", "model.deep.hidden"),
        ("+data.generator.nrows=10", "data.generator.n_rows"),
        ("++data.features.categorial=[user]", "data.features.categorical"),
        ("+sed=1", "seed"),
    ],
)
def test_a_mistyped_key_is_refused_with_the_closest_valid_key(override, suggestion):
    with pytest.raises(ConfigError, match=rf"did you mean {suggestion}\?"):
        compose_config([override])


@pytest.mark.slow
def test_a_value_of_the_wrong_type_is_refused_by_the_schema():
    for override, key in [
        ("trainer.max_epochs=1.5", "trainer.max_epochs"),
        ("data.batch_size=abc", "data.batch_size"),
        ("model.deep.batch_norm=maybe", "model.deep.batch_norm"),
        ("model.deep.hidden=7", "model.deep.hidden"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            compose_config([override])


def test_a_mistyped_key_in_an_experiment_file_names_the_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ntrainer:\n  max_epoch: 3\n"
    )
    overrides = [f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"]
    with pytest.raises(ConfigError, match=r"max_epochs\?.*experiment/typo"):
        compose_config(overrides)


def test_the_documented_avazu_time_split_composes_as_written():
    cfg = compose_config(["data=avazu", "data.split.method=time", "data.split.column=hour"])
    assert (cfg.data.split.method, cfg.data.split.column) == ("time", "hour")
    validate(cfg)
    # Criteo carries no time stamp: no column to split on, and the schema says so.
    with pytest.raises(ConfigError, match=r"data\.split\.column: no such key"):
        compose_config(["data=criteo", "data.split.column=hour"])


@pytest.mark.fast_first
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.wide.name=sgdx"], r"optim\.wide\.name='sgdx'.*did you mean sgd\?.*adagrad"),
        (["+optim.wide.momentun=0.9", "optim.wide.name=sgd"], r"did you mean momentum\?"),
        (["optim.scheduler={name: stepp}"], r"optim\.scheduler\.name.*did you mean step\?"),
        (["optim.scheduler={name: step, step_sise: 2}"], r"did you mean step_size\?"),
        (["model.deep.activation=rellu"], r"model\.deep\.activation.*did you mean relu\?"),
        (["trainer.loader=streem"], r"trainer\.loader.*did you mean stream\?"),
        (["trainer.logger=tensorbord"], r"trainer\.logger.*did you mean tensorboard\?"),
        (["data.name=synthetik"], r"data\.name.*did you mean synthetic\?"),
        (["data.split.method=tiem"], r"data\.split\.method.*did you mean time\?"),
        (["data.features.dense_transform=log1p"], r"dense_transform.*log1p_standardize"),
        (["data=criteo", "data.on_bad_rows=skipp"], r"data\.on_bad_rows.*did you mean skip\?"),
        (["data.features.crosses=[{fields: [user, item], hashd: true}]"], r"hashed\?"),
        (["trainer.reduce_lr_on_plateau={factr: 0.5}"], r"did you mean factor\?"),
        (["optim=adam", "optim.wide.name=sparse_adam", "+optim.wide.fusd=true"], r"fused\?"),
    ],
)
def test_name_like_values_are_refused_before_any_data_work(overrides, message, monkeypatch):
    from widedeep.training import datamodule, run

    def no_data_work(*args, **kwargs):
        raise AssertionError("data work started before the config was checked")

    monkeypatch.setattr(datamodule.WideDeepDataModule, "setup", no_data_work)
    with pytest.raises(ConfigError, match=message):
        run.train(compose_config(overrides, output_dir="unused"))


def test_sparse_adam_takes_the_options_of_its_dense_parameters_adam():
    """optim.X.name=sparse_adam gives the tower's dense parameters Adam with Adam's own options
    (the throughput benchmark's fused rows): the key check must let them through."""
    from widedeep.training.run import validate

    validate(
        compose_config(
            [
                "optim=adam",
                "optim.wide.name=sparse_adam",
                "+optim.wide.fused=true",
                "model.wide.sparse_min_rows=0",
            ]
        )
    )


def _app(module: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run an app's main() in process (Hydra reads sys.argv); (exit code, stdout, stderr)."""
    import importlib

    monkeypatch.setattr(sys, "argv", [module, *argv])
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    code = 0
    try:
        importlib.import_module(module).main()
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.fast_first
@pytest.mark.parametrize(
    "argv",
    [
        ["trainer.max_epoch=1"],
        ["+trainer.max_epoch=1"],
        ["model.deep.hiden=[32]"],
        ["trainer.max_epochs=1.5"],
        ["optim.wide.name=sgdx"],
        ["model=huge"],
    ],
)
def test_train_refuses_a_mistake_in_one_line_with_exit_code_2(argv, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = _app("widedeep.cli.train", argv, monkeypatch, capsys)
    assert code == 2
    assert err.startswith("widedeep-train: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "+trainer" not in err  # no hint to add the typo
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, app",
    [
        ("widedeep.cli.train", "train"),
        ("widedeep.cli.bench", "bench"),
        ("widedeep.cli.tune", "tune"),
    ],
)
def test_help_is_short_and_lists_the_groups_and_their_options(module, app, monkeypatch, capsys):
    code, out, _ = _app(module, ["--help"], monkeypatch, capsys)
    assert code == 0
    assert out.startswith(f"widedeep-{app}: ")
    assert len(out.strip().splitlines()) <= 40, "help should fit a screen"
    assert "$WIDEDEEP_DATA_DIR" in out and "Outputs:" in out
    for group in ("data", "model", "optim", "trainer", "experiment"):
        first, *rest = out.split(f"\n  {group} ")[1].split("\n")
        # the group's line and its continuation lines (indented deeper than a group's name)
        line = " ".join([first, *itertools.takewhile(lambda s: s.startswith("    "), rest)])
        for option in options(group):
            assert option in line, f"--help lists no {group}={option}"
    assert out.count(f"widedeep-{app} ") >= 5  # the common overrides


def test_summary_has_real_help_and_tells_an_lr_sweep_apart(tmp_path, capsys):
    from widedeep.cli.summary import main

    assert main(["--help"]) == 0
    assert "RUNS_DIR" in capsys.readouterr().out
    metrics = {
        "dataset": "synthetic",
        "kind": "wide",
        "seed": 0,
        "epochs": 2,
        "best_epoch": 1,
        "val": {"auc": 0.7, "logloss": 0.5},
        "test": {"auc": 0.71, "logloss": 0.49},
        "params": {"total": 10, "wide": 10, "deep": 0, "wide_nonzero": 4},
        "wall_time_s": 1.0,
    }
    for n, lr in enumerate(("0.1", "0.01")):
        run = tmp_path / f"{n}_optim.wide.lr={lr}"
        (run / ".hydra").mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / ".hydra" / "overrides.yaml").write_text(f"- optim.wide.lr={lr}\n- seed=0\n")
    assert main([str(tmp_path)]) == 0
    header, _, *rows = capsys.readouterr().out.strip().splitlines()
    assert header.startswith("| dataset | model | seed | optim.wide.lr |")
    assert sorted(r.split(" | ")[3] for r in rows) == ["0.01", "0.1"]
    assert main([str(tmp_path / "missing")]) == 2
    assert main([]) == 2


@pytest.mark.slow
def test_data_info_and_training_name_a_constant_field(tmp_path, capsys, caplog):
    from widedeep.cli.data import main
    from widedeep.training.run import train

    one_user = ["data.generator.n_rows=3000", "data.generator.n_users=1"]
    assert main(["info", *one_user]) == 0
    assert "constant (one value on every training row" in capsys.readouterr().out
    tiny = [
        *one_user,
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.logger=none",
        "model=wide",
    ]
    with caplog.at_level("WARNING", logger="widedeep"):
        train(compose_config(tiny, output_dir=str(tmp_path)))
    assert any("constant" in r.message and "user" in r.message for r in caplog.records)
