"""torch.export of a trained model: same scores as the eager model, loadable with torch alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import random_batch

from widedeep.cli.config import compose_config
from widedeep.cli.export import main
from widedeep.data.loader import BatchLoader
from widedeep.data.pipeline import load_data
from widedeep.nn.build import build_model
from widedeep.serving.export import example_batch, export_model, export_program, load_exported
from widedeep.training.checkpoint import model_from_checkpoint
from widedeep.training.run import train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "load_exported.py"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wide", "deep", "wide_deep"])
def test_exported_program_matches_eager_on_any_batch_size(schema, kind):
    """Dense, crosses and a bag; batch sizes and bag lengths other than the example's."""
    deep = {"embedding_dim": 4, "embedding_dims": {"user": 6}, "hidden": [8]}
    model = build_model(schema, kind, {"use_dense": True}, deep).eval()
    program = export_program(model, example_batch(schema)).module()
    for size, seed in [(1, 1), (5, 2), (33, 3)]:
        batch = random_batch(schema, size, seed)  # bags with empty rows too
        with torch.no_grad():
            want = model.parts(**batch.inputs())
        for got, expected in zip(program(**batch.inputs()), want, strict=True):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A tiny trained synthetic run and its export: (run dir, .pt2 file, data config)."""
    out = tmp_path_factory.mktemp("export")
    cfg = compose_config(
        [
            "data.generator.n_rows=3000",
            "trainer.max_epochs=1",
            "trainer.progress_bar=false",
            "trainer.logger=none",
            "model.deep.hidden=[8]",
            "data.batch_size=128",
        ],
        output_dir=str(out / "run"),
    )
    train(cfg)
    path = export_model(out / "run" / "checkpoints" / "best.ckpt", out / "model.pt2")
    return out / "run", path, dict(cfg.data)


@pytest.mark.slow
def test_exported_checkpoint_matches_eager_on_a_test_batch(exported):
    run, path, data_cfg = exported
    model, _ = model_from_checkpoint(run / "checkpoints" / "best.ckpt")
    program, meta = load_exported(path)
    assert meta["outputs"] == ["logit", "wide_logit", "deep_logit"]
    batch = next(iter(BatchLoader(load_data(data_cfg).splits["test"], 200)))
    with torch.no_grad():
        want = model.parts(**batch.inputs())
    for got, expected in zip(program.module()(**batch.inputs()), want, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_example_loads_with_torch_alone(exported):
    _, path, _ = exported
    # widedeep is installed in this environment: block its import to prove the example needs
    # nothing but torch.
    code = (
        "import runpy, sys; sys.modules['widedeep'] = None; "
        f"sys.argv = ['load_exported.py', {str(path)!r}]; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wide_deep model: example batch max |logit - expected|" in result.stdout
    assert result.stdout.count("click probability") == 5


def test_missing_checkpoint_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nope.ckpt"), str(tmp_path / "model.pt2")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "nope.ckpt" in err
