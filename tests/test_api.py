"""The notebook API: a DataFrame and a column spec to a trained run, through ``train(cfg)``, and
``predict(frame)`` equal to ``widedeep-predict`` on the saved run."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from test_table import ratings

import widedeep
from widedeep.cli import predict as predict_cli

SPEC = {
    "label": "rating",
    "threshold": 4,
    "categorical": ["user", "item"],
    "dense": ["price"],
    "bags": ["tags"],
    "crosses": [["user", "item"]],
}
OVERRIDES = [
    "trainer.max_epochs=2",
    "data.batch_size=64",
    "optim.wide.lr=0.03",
    "optim.deep.lr=0.01",
    "trainer.progress_bar=false",
    "trainer.logger=none",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("api") / "run"
    frame = ratings(3000)
    return widedeep.fit(frame, **SPEC, overrides=OVERRIDES, output_dir=run), frame


@pytest.mark.slow
def test_fit_learns_the_pattern_and_writes_a_cli_run(trained):
    model, _ = trained
    assert model.metrics["test"]["auc"] > 0.75  # chance is 0.5; the planted pattern ~0.85
    saved = json.loads((model.path / "metrics.json").read_text())
    assert saved["dataset"] == "table" and saved["test"] == model.metrics["test"]
    assert (model.path / "checkpoints" / "best.ckpt").is_file()
    assert (model.path / "preprocessor" / "preprocessor.json").is_file()


@pytest.mark.slow
def test_predict_gives_one_probability_per_row_as_widedeep_predict(trained, tmp_path):
    model, _ = trained
    new = ratings(200, seed=1).drop("rating")
    scores = model.predict(new)
    assert scores.shape == (200,) and ((scores >= 0) & (scores <= 1)).all()
    new.write_csv(tmp_path / "new.csv")
    predict_cli.main(
        [
            f"checkpoint={model.path}",
            f"input={tmp_path / 'new.csv'}",
            f"output={tmp_path / 'scores.parquet'}",
        ]
    )
    cli = pl.read_parquet(tmp_path / "scores.parquet")["score"].to_numpy()
    np.testing.assert_allclose(scores, cli, rtol=0, atol=1e-6)
    reloaded = widedeep.load_model(model.path).predict(new)
    np.testing.assert_array_equal(reloaded, scores)


@pytest.mark.slow
def test_predict_takes_a_pandas_frame_and_ranks_likes_higher(trained):
    model, _ = trained
    new = ratings(400, seed=2)
    scores = model.predict(new.to_pandas())
    np.testing.assert_allclose(scores, model.predict(new), atol=1e-6)
    liked = (new["rating"] >= 4).to_numpy()
    assert scores[liked].mean() > scores[~liked].mean()


def test_fit_refuses_what_is_not_a_frame():
    with pytest.raises(TypeError, match="polars or pandas DataFrame"):
        widedeep.fit([1, 2, 3], label="y")


@pytest.mark.slow
def test_the_readme_dataframe_example_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### From a DataFrame", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the run goes to outputs/<date>/<time>, as the CLI's
    scope = {"frame": ratings(2000), "new_rows": ratings(30, seed=1).drop("rating")}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["scores"].shape == (30,)
    assert scope["model"].path.is_relative_to(tmp_path / "outputs")
