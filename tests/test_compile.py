"""trainer.compile: compiled scores equal eager ones, no recompiles in steady state, the same
state_dict keys (resume across compile on/off), and the eager fallback."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from conftest import random_batch

from widedeep.cli.config import compose_config
from widedeep.nn.build import build_model
from widedeep.training import compiled
from widedeep.training.compiled import CompiledForward, compile_model
from widedeep.training.run import train

FAST = "aot_eager"  # the graphs dynamo and AOTAutograd make, without inductor's code generation


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Dynamo reuses a graph for another model of the same shapes: each test starts afresh."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _model(schema, **deep):
    torch.manual_seed(0)
    return build_model(
        schema,
        "wide_deep",
        {"sparse_min_rows": 0},
        {"sparse_min_rows": 0, "hidden": [16, 8], "dropout": 0.0, **deep},
    )


def _scores_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch.inputs())
    out.square().mean().backward()
    grads = {n: p.grad.to_dense() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.slow
@pytest.mark.parametrize("backend", [FAST, "inductor"])
def test_compiled_scores_and_gradients_equal_eager(schema, backend):
    eager = _model(schema)
    model = copy.deepcopy(eager)
    stats = compile_model(model, backend=backend)
    assert stats.compiled_modules == 1
    for size in (32, 32, 13):  # 13: a partial last batch
        batch = random_batch(schema, size, seed=size)
        out, grads = _scores_and_grads(model, batch)
        ref, ref_grads = _scores_and_grads(eager, batch)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
        assert grads.keys() == ref_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=0, msg=name)
    model.eval(), eager.eval()
    with torch.inference_mode():
        batch = random_batch(schema, 50, seed=1)
        torch.testing.assert_close(
            model(**batch.inputs()), eager(**batch.inputs()), atol=1e-5, rtol=0
        )
    assert stats.compiles >= 1 and stats.fallback is None


@pytest.mark.slow
def test_no_recompiles_in_steady_state(schema):
    """One graph for training and one for evaluation, whatever the batch sizes and bag
    lengths after the first: dynamo's own graph counter stays put."""
    from torch._dynamo.utils import counters

    model = _model(schema)
    stats = compile_model(model, backend=FAST)
    _scores_and_grads(model, random_batch(schema, 64, seed=0))
    after_first = counters["stats"]["unique_graphs"]
    for seed, size in enumerate((64, 64, 17, 64, 2, 64)):
        _scores_and_grads(model, random_batch(schema, size, seed=seed, min_bag_length=seed % 2))
    assert counters["stats"]["unique_graphs"] == after_first
    model.eval()
    with torch.inference_mode():
        model(**random_batch(schema, 128, seed=9).inputs())
        after_eval = counters["stats"]["unique_graphs"]
        for size in (128, 31, 128, 3):
            model(**random_batch(schema, size, seed=size).inputs())
    assert counters["stats"]["unique_graphs"] == after_eval
    assert stats.compiles == 2  # training, evaluation


def test_state_dict_keys_unchanged_and_loads_both_ways(schema):
    eager = _model(schema)
    model = _model(schema, hidden=[16, 8])
    compile_model(model, backend=FAST)
    assert list(model.state_dict()) == list(eager.state_dict())
    model.load_state_dict(eager.state_dict())  # strict: the same keys
    eager.load_state_dict(model.state_dict())
    assert isinstance(model.deep.mlp.forward, CompiledForward)
    assert compile_model(model) is compile_model(model)  # idempotent: compiled once


def test_compile_failure_falls_back_to_eager_with_one_warning(schema, caplog):
    def broken(gm, example_inputs):
        raise RuntimeError("no C++ compiler\nsecond line")

    eager = _model(schema)
    model = copy.deepcopy(eager)
    stats = compile_model(model, backend=broken)
    batch = random_batch(schema, 16)
    with caplog.at_level(logging.WARNING, logger="widedeep"):
        out, _ = _scores_and_grads(model, batch)
        _scores_and_grads(model, batch)
    ref, _ = _scores_and_grads(eager, batch)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    warnings = [r.getMessage() for r in caplog.records if "trainer.compile" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "falling back to eager" in warnings[0] and "no C++ compiler" in warnings[0]
    assert stats.fallback is not None and "no C++ compiler" in stats.fallback


TINY = [
    "data.generator.n_rows=3000",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=256",
    "trainer.limit_train_batches=5",
    "trainer.patience=5",
    # FTRL (wide) + AdaGrad (deep) on sparse tables: the per-tower optimizers.
    "optim=paper",
    "model.wide.sparse_min_rows=0",
    "model.deep.sparse_min_rows=0",
]


def _run(tmp_path, name, *extra):
    return train(compose_config([*TINY, *extra], output_dir=str(tmp_path / name)))


def _weights(tmp_path, name):
    ckpt = torch.load(tmp_path / name / "checkpoints/last.ckpt", weights_only=True)
    return ckpt["state_dict"], ckpt["optimizer_states"]


@pytest.mark.slow
def test_resume_across_compile_on_and_off(tmp_path, monkeypatch):
    """Train compiled, resume eager, and the other way round: both end where an uninterrupted
    eager run ends (weights and FTRL / AdaGrad state), and report what compiling did."""
    monkeypatch.setattr(compiled, "BACKEND", FAST)
    full = _run(tmp_path, "full", "trainer.max_epochs=2", "trainer.compile=false")
    assert full["compile"] is None
    for first, second in (("true", "false"), ("false", "true")):
        part, resumed = f"part-{first}", f"resumed-{first}"
        metrics = _run(tmp_path, part, "trainer.max_epochs=1", f"trainer.compile={first}")
        last = tmp_path / part / "checkpoints/last.ckpt"
        again = _run(
            tmp_path,
            resumed,
            "trainer.max_epochs=2",
            f"trainer.compile={second}",
            f"resume_from={last}",
        )
        on = metrics if first == "true" else again
        assert on["compile"]["compiled_modules"] == 1 and on["compile"]["fallback"] is None
        weights, states = _weights(tmp_path, resumed)
        ref_weights, ref_states = _weights(tmp_path, "full")
        assert weights.keys() == ref_weights.keys()
        for key, value in ref_weights.items():
            torch.testing.assert_close(weights[key], value, atol=1e-5, rtol=0, msg=key)
        assert len(states) == len(ref_states) == 2  # FTRL and AdaGrad, both restored


@pytest.mark.slow
def test_compiled_two_process_ddp_matches_one_eager_process(tmp_path):
    """trainer=ddp (gloo, 2 processes, sparse tables, FTRL + AdaGrad) with trainer.compile=true:
    it compiles without falling back and ends at the metrics of one eager process."""
    import json
    import os
    import subprocess
    import sys

    tiny = [*TINY, "trainer.max_epochs=1", "data.batch_size=256"]
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WIDEDEEP_COMPILE_BACKEND": FAST}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "widedeep.cli.train", "trainer=ddp", "trainer.compile=true"]
    ddp = subprocess.Popen(
        [*cmd, *tiny, f"hydra.run.dir={run}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        single = _run(tmp_path, "single", "trainer.max_epochs=1", "trainer.compile=false")
        out, _ = ddp.communicate(timeout=1800)
    finally:
        ddp.kill()
    assert ddp.returncode == 0, out[-3000:]
    assert "falling back to eager" not in out, out[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compile"]["compiled_modules"] == 1 and metrics["compile"]["fallback"] is None
    for split in ("val", "test"):
        assert metrics[split]["auc"] == pytest.approx(single[split]["auc"], abs=1e-3)


@pytest.mark.slow
def test_predictor_compiles_as_the_run_did_and_scores_as_eager(tmp_path, monkeypatch):
    from widedeep.data.columnar import ColumnarData
    from widedeep.serving.predictor import Predictor
    from widedeep.training.predict import predict_split

    monkeypatch.setattr(compiled, "BACKEND", FAST)
    _run(tmp_path, "run", "trainer.max_epochs=1", "trainer.compile=true")
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    as_run = Predictor.load(ckpt, compile=None)
    eager = Predictor.load(ckpt, compile=False)
    assert isinstance(as_run.model.deep.mlp.forward, CompiledForward)
    assert not isinstance(eager.model.deep.mlp.forward, CompiledForward)
    batch = random_batch(as_run.preprocessor.schema, 300, seed=3)
    data = ColumnarData(batch.dense, batch.categorical, batch.crosses, batch.label)
    a, b = predict_split(as_run.model, data, 128), predict_split(eager.model, data, 128)
    torch.testing.assert_close(
        torch.from_numpy(a["logit"].to_numpy()),
        torch.from_numpy(b["logit"].to_numpy()),
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(ValueError, match="compile"):
        Predictor.load(ckpt, compile="yes")
