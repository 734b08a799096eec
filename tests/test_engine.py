"""The training engine: per-tower optimizers, sparse updates, schedules and exact resume."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from conftest import random_batch

from widedeep import DeepTower, WideDeep, WideTower
from widedeep.cli.config import compose_config
from widedeep.training.run import train

TINY = [
    "data.generator.n_rows=6000",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=512",
    "trainer.patience=10",
]


def _pair(schema, sparse_min_rows):
    torch.manual_seed(0)
    return WideDeep(
        WideTower(schema, bias=False, sparse_min_rows=sparse_min_rows),
        DeepTower(
            schema, embedding_dim=4, hidden=(8,), bias=False, sparse_min_rows=sparse_min_rows
        ),
    )


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.5),
        lambda p: torch.optim.Adagrad(p, lr=0.1),
    ],
)
def test_sparse_and_dense_gradients_train_identically(schema, make_opt):
    dense, sparse = _pair(schema, None), _pair(schema, 0)
    assert sparse.wide.weights.sparse and not dense.wide.weights.sparse
    opt_dense, opt_sparse = make_opt(dense.parameters()), make_opt(sparse.parameters())
    for step in range(10):
        batch = random_batch(schema, 64, seed=step)
        for model, opt in ((dense, opt_dense), (sparse, opt_sparse)):
            opt.zero_grad()
            logits = model(**batch.inputs())
            torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.label).backward()
            opt.step()
    assert sparse.wide.weights.weight.grad.is_sparse
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_dense_only_optimizer_on_sparse_tables_is_refused(tmp_path):
    cfg = compose_config([*TINY, "model.wide.sparse_min_rows=0"], str(tmp_path))
    with pytest.raises(ValueError, match="optim.wide.*sparse"):
        train(cfg)


class _Batches(pl.Callback):
    """The (epoch, batch) of every batch this process trains: where a resumed run starts."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((trainer.current_epoch, batch_idx))


@pytest.mark.slow
def test_resume_restores_both_optimizers_exactly(tmp_path):
    """FTRL (wide) and AdaGrad (deep) both carry per-coordinate state: a resumed run matches an
    uninterrupted one only if both states come back. Tolerance 1e-6: same ops, same order.
    Dropout > 0: the masks come from the global RNG (shuffling has its own seed), so the match
    also needs the RNG state the checkpoint carries (module.RNG_KEY)."""
    common = [
        *TINY,
        "optim=paper",
        "model.deep.dropout=0.3",
        "trainer.limit_train_batches=4",
        "optim.scheduler={name: step, step_size: 1, gamma: 0.5}",
    ]
    full = train(compose_config([*common, "trainer.max_epochs=3"], str(tmp_path / "full")))
    train(compose_config([*common, "trainer.max_epochs=2"], str(tmp_path / "part")))
    probe = _Batches()
    resumed = train(
        compose_config(
            [*common, "trainer.max_epochs=3", f"resume_from={tmp_path}/part/checkpoints/last.ckpt"],
            str(tmp_path / "resumed"),
        ),
        extra_callbacks=[probe],
    )
    # The resumed process trains the third epoch only: were resume_from ignored, it would
    # retrain all three from scratch and (training being deterministic) still match below.
    assert probe.seen == [(2, b) for b in range(4)]
    a = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(value, b["state_dict"][key], atol=1e-6, rtol=0, msg=key)
    assert full["test"]["auc"] == pytest.approx(resumed["test"]["auc"], abs=1e-6)
    # Two optimizers, and without their state the resumed run would differ (checked above).
    assert len(a["optimizer_states"]) == 2


def _wide_nonzero(checkpoint) -> int:
    """Non-zero wide weights counted from a checkpoint's tensors (not the module's count)."""
    return sum(
        int(torch.count_nonzero(v))
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("model.wide.")
    )


@pytest.mark.slow
def test_l1_sparsity_and_the_step_scheduler_each_do_their_part(tmp_path):
    """One setting changed at a time: L1 (no scheduler on either side), then the scheduler
    (no L1 on either side)."""
    sched = "optim.scheduler={name: step, step_size: 1, gamma: 0.5}"
    common = [*TINY, "optim=paper", "model=wide", "trainer.max_epochs=2"]
    runs = {
        "l1": [*common, "optim.wide.l1=0.05"],
        "none": [*common, "optim.wide.l1=0.0"],
        "sched": [*common, "optim.wide.l1=0.0", sched],
    }
    metrics, best, last = {}, {}, {}
    for name, overrides in runs.items():
        metrics[name] = train(compose_config(overrides, str(tmp_path / name)))
        best[name] = torch.load(tmp_path / name / "checkpoints/best.ckpt", weights_only=True)
        last[name] = torch.load(tmp_path / name / "checkpoints/last.ckpt", weights_only=True)
        # metrics.json counts the best checkpoint's weights (the ones evaluated and saved).
        logged = json.loads((tmp_path / name / "metrics.json").read_text())
        assert logged["params"]["wide_nonzero"] == _wide_nonzero(best[name]), name
    nonzero = {k: _wide_nonzero(best[k]) for k in runs}
    # L1 in FTRL leaves weights exactly zero. Observed (2026-12-02): 40 of 2,957 weights
    # non-zero with l1=0.05 against 2,949 without, a ratio of 0.014 (l1=0.025: 68, 0.023); the
    # bound, 1.5 times the observed ratio, fails an L1 applied at half its strength.
    assert nonzero["l1"] < 0.02 * nonzero["none"], nonzero
    assert nonzero["none"] > 0.9 * best["none"]["state_dict"]["model.wide.weights.weight"].numel()
    # Stepped once per epoch after the first: the second epoch ran at half the rate; without
    # the scheduler, at the configured one.
    lr = {k: last[k]["optimizer_states"][0]["param_groups"][0]["lr"] for k in runs}
    base = compose_config(runs["none"]).optim.wide.lr
    assert lr["sched"] == pytest.approx(base * 0.5)
    assert lr["none"] == lr["l1"] == pytest.approx(base)


def test_embedding_l2_is_the_bars_penalty_on_whole_tables():
    """embedding_l2 = adding l2 / 2 * ||E||^2 of every table to the loss; other weights free."""
    from widedeep.optim.factory import build_optimizer

    torch.manual_seed(0)
    table, other = torch.randn(5, 3), torch.randn(3)
    ids = torch.tensor([1, 3])

    def run(with_setting: bool) -> list[torch.Tensor]:
        e, w = torch.nn.Parameter(table.clone()), torch.nn.Parameter(other.clone())
        settings = {"name": "adam", "lr": 0.05, "embedding_l2": 0.3 if with_setting else 0.0}
        opt = build_optimizer([e, w], settings, tables={id(e)})
        for _ in range(5):
            loss = (e[ids].sum(1) * w.sum()).sum()
            if not with_setting:
                loss = loss + 0.3 / 2 * e.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [e.detach(), w.detach()]

    for a, b in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"name": "ftrl", "lr": 0.1, "embedding_l2": 0.1}, "coupled weight decay"),
        ({"name": "adam", "lr": 0.1, "embedding_l2": -1.0}, "must be >= 0"),
    ],
)
def test_embedding_l2_rejects_what_cannot_work(settings, message):
    from widedeep.optim.factory import build_optimizer

    p = torch.nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=message):
        build_optimizer([p], settings, tables={id(p)})


def test_sparse_adam_passes_fused_to_the_dense_adam_only(schema):
    from widedeep.training.module import WideDeepModule

    settings = {"name": "sparse_adam", "lr": 1e-3, "fused": True}
    module = WideDeepModule(
        schema=schema.to_dict(),
        kind="wide_deep",
        wide={"sparse_min_rows": 0},
        deep={"embedding_dim": 4, "hidden": [8], "sparse_min_rows": 0},
        optim={"wide": settings, "deep": settings},
    )
    optimizers, _ = module.configure_optimizers()
    kinds = sorted(type(o).__name__ for o in optimizers)
    assert kinds == ["Adam", "Adam", "SparseAdam", "SparseAdam"]
    assert all(o.defaults["fused"] for o in optimizers if isinstance(o, torch.optim.Adam))


def test_sparse_adam_without_sparse_tables_names_the_setting(schema):
    from widedeep.training.module import WideDeepModule

    module = WideDeepModule(
        schema=schema.to_dict(),
        kind="wide_deep",
        wide={},
        deep={"embedding_dim": 4, "hidden": [8]},
        optim={"wide": {"name": "adam", "lr": 1e-3}, "deep": {"name": "sparse_adam", "lr": 1e-3}},
    )
    with pytest.raises(ValueError, match=r"optim\.deep: .*set model\.deep\.sparse_min_rows"):
        module.configure_optimizers()
