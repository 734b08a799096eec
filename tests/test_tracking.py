"""trainer.logger=mlflow: params, per-epoch metrics and artefacts in a local MLflow store, read
back with MLflow's client; widedeep-bench's runs under one experiment."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from widedeep.cli.config import compose_config
from widedeep.training.run import ConfigError, train


@pytest.fixture
def mlflow():
    return pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")

TINY = [
    "data.generator.n_rows=6000",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "data.batch_size=512",
    "trainer.logger=mlflow",
]


def _runs(mlflow, uri: str, experiment: str) -> dict[str, object]:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return {r.info.run_name: r for r in client.search_runs([found.experiment_id])}


@pytest.mark.slow
def test_a_run_logs_its_config_metrics_per_epoch_and_files(tmp_path, monkeypatch, mlflow):
    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns/mlflow.db, artefacts beside it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run-1"
    metrics = train(compose_config([*TINY, "model=wide_deep"], output_dir=str(out)))

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    run = _runs(mlflow, uri, "widedeep")["run-1"]  # the output dir's name
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.kind"] == "wide_deep" and params["trainer.max_epochs"] == "2"
    hidden = OmegaConf.load(out / "config.yaml").model.deep.hidden
    assert json.loads(params["model.deep.hidden"]) == list(hidden)  # a list is one param
    assert not any(key.startswith("schema") for key in params)  # the config, not the module
    client = mlflow.MlflowClient(uri)
    per_epoch = client.get_metric_history(run.info.run_id, "wide/nonzero")
    assert len(per_epoch) == 2
    assert run.data.metrics["test/auc"] == pytest.approx(metrics["test"]["auc"])
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json"} <= files
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / "dl"))
    assert json.loads(Path(local).read_text())["test"] == metrics["test"]


def test_without_mlflow_the_run_stops_at_once_naming_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"trainer\.logger=mlflow.*\[mlflow\]"):
        train(compose_config(TINY, output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "config.yaml").exists()  # before anything else


@pytest.mark.slow
def test_the_bench_logs_every_run_and_its_report_under_one_experiment(
    tmp_path, monkeypatch, mlflow
):
    from hydra import compose, initialize_config_module

    from widedeep.experiment.harness import bench

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/tracking.db"
    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(
            config_name="bench",
            overrides=[
                *TINY,
                "data.generator.n_rows=4000",
                f"trainer.mlflow.tracking_uri={uri}",
                f"bench.store={tmp_path}/store",
                f"bench.out={tmp_path}/out",
                "output_dir=unused",
                "bench.seeds=[0]",
                "bench.data_seeds=null",
                "bench.bootstrap=100",
                "bench.grid=main",
                "bench.controls=[]",
                "bench.sweep.deep=[{name: small, overrides: {model.deep.hidden: [16]}}]",
                "bench.main.deep=small",
                "bench.sweep.wide=[{name: l1_0, overrides: {optim.wide.l1: 0.0}}]",
                "bench.main.wide=l1_0",
            ],
        )
    out = bench(cfg)
    runs = _runs(mlflow, uri, "bench-synthetic")
    trained = {name for name in runs if name != "report"}
    # Named as the bench names its models: kind/seed/levels.
    assert sorted(name.split("/")[0] for name in trained) == ["deep", "wide", "wide_deep"]
    client = mlflow.MlflowClient(uri)
    report = {a.path for a in client.list_artifacts(runs["report"].info.run_id)}
    assert "summary.md" in report and any(p.endswith(".png") for p in report)
    assert {p.name for p in out.iterdir() if p.is_file()} >= {"summary.md", "results.csv"}


@pytest.mark.slow
def test_switching_to_mlflow_keeps_every_stored_run():
    from widedeep.experiment.runs import run_key

    csv = compose_config([*TINY, "trainer.logger=csv"])
    tracked = compose_config(
        [*TINY, "trainer.mlflow.tracking_uri=http://127.0.0.1:5000", "trainer.mlflow.run_name=x"]
    )
    assert run_key(tracked) == run_key(csv)
