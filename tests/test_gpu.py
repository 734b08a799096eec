"""The CUDA path: sparse tables and FTRL on a GPU step as on the CPU, pinned batches copy
asynchronously, and a tiny run trains on one GPU. Skipped where there is no CUDA device
(benchmarks/gpu.sh measures the same path)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_batch

from widedeep import Schema
from widedeep.cli.config import compose_config
from widedeep.data.columnar import ColumnarData
from widedeep.nn.build import build_model
from widedeep.optim.ftrl import FTRL
from widedeep.training.predict import predict_split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _step(model, batch, optimizers):
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(**batch.inputs()), batch.label
    )
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()


def test_sparse_tables_and_ftrl_step_on_cuda_as_on_cpu(schema):
    torch.manual_seed(0)
    cpu = build_model(schema, "wide_deep", {"sparse_min_rows": 0}, {"sparse_min_rows": 0})
    gpu = copy.deepcopy(cpu).cuda()
    opts = {}
    for name, model in (("cpu", cpu), ("gpu", gpu)):
        opts[name] = [
            FTRL(model.wide.parameters(), alpha=0.1, beta=0.001, l1=0.01),
            torch.optim.Adagrad(list(model.deep.parameters()) + [model.bias], lr=0.05),
        ]
    for seed in range(3):
        batch = random_batch(schema, 64, seed=seed)
        _step(cpu, batch, opts["cpu"])
        _step(gpu, batch.pin_memory().to("cuda"), opts["gpu"])
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b.cpu(), atol=1e-5, rtol=1e-4, msg=name)
    state = opts["gpu"][0].state[gpu.wide.weights.weight]
    assert state and all(t.device.type == "cuda" for t in state.values() if torch.is_tensor(t))


def test_pinned_batch_copies_non_blocking(schema):
    batch = random_batch(schema, 8).pin_memory()
    assert batch.label.is_pinned() and batch.categorical.is_pinned()
    moved = batch.to("cuda")
    torch.cuda.synchronize()
    assert moved.label.device.type == "cuda"
    torch.testing.assert_close(moved.dense.cpu(), batch.dense)


def test_predict_split_on_a_gpu_model_matches_cpu(schema):
    flat = Schema(dense=schema.dense, categorical=schema.categorical, crosses=schema.crosses)
    torch.manual_seed(0)
    model = build_model(flat, "wide_deep", {}, {})
    batch = random_batch(flat, 100)
    data = ColumnarData(batch.dense, batch.categorical, batch.crosses, batch.label)
    on_cpu = predict_split(model, data, 32)
    on_gpu = predict_split(copy.deepcopy(model).cuda(), data, 32)
    for column in ("wide_logit", "deep_logit", "logit"):
        torch.testing.assert_close(
            torch.from_numpy(on_gpu[column].to_numpy()),
            torch.from_numpy(on_cpu[column].to_numpy()),
            atol=1e-5,
            rtol=1e-4,
        )


@pytest.mark.slow
def test_tiny_run_trains_on_one_gpu(tmp_path):
    from widedeep.training.run import train

    cfg = compose_config(
        [
            "data.generator.n_rows=3000",
            "trainer.max_epochs=1",
            "trainer.progress_bar=false",
            "trainer.logger=none",
            "trainer.accelerator=gpu",
            "optim=paper",
            "model.wide.sparse_min_rows=0",
            "model.deep.sparse_min_rows=0",
        ],
        output_dir=str(tmp_path),
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
