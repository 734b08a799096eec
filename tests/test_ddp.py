"""Data parallel training: rank shards of the in-memory loader, the DDP settings, sparse
gradients under DDP, the SLURM launcher config, and a real 2-process run against 1 process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import polars as pl
import pytest
import torch
import torch.distributed as dist
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from widedeep.cli.config import compose_config
from widedeep.data.columnar import ColumnarData
from widedeep.data.loader import BatchLoader
from widedeep.nn.embedding import FieldEmbedding
from widedeep.training import distributed
from widedeep.training.datamodule import WideDeepDataModule
from widedeep.training.run import ConfigError, train, validate


def _columns(n: int) -> ColumnarData:
    return ColumnarData(
        dense=torch.arange(n, dtype=torch.float32).unsqueeze(1),
        categorical=torch.zeros(n, 1, dtype=torch.long),
        crosses=torch.zeros(n, 0, dtype=torch.long),
        label=(torch.arange(n) % 2).float(),
    )


def _rank_batches(n: int, batch: int, world: int, shuffle: bool, epoch: int = 3):
    """Per rank, the row ids of each batch of one epoch."""
    out = []
    for rank in range(world):
        loader = BatchLoader(_columns(n), batch, shuffle, seed=7, rank=rank, world_size=world)
        loader.sampler.set_epoch(epoch)
        out.append([b.row_id if shuffle else b.dense[:, 0].long() for b in loader])
    return out


@pytest.mark.parametrize("shuffle", [True, False])
# Remainders 4 (>= 2 ranks), 5 (>= 3), 0 and 3: the last global batch splits without padding.
@pytest.mark.parametrize(
    ("n", "batch", "world"), [(100, 8, 2), (101, 12, 3), (64, 16, 4), (7, 4, 2)]
)
def test_rank_shards_are_disjoint_complete_and_equal(n, batch, world, shuffle):
    ranks = _rank_batches(n, batch, world, shuffle)
    counts = {len(batches) for batches in ranks}
    assert len(counts) == 1, "every rank must yield the same number of batches"
    ids = [torch.cat(batches).tolist() for batches in ranks]
    assert sorted(sum(ids, [])) == list(range(n)), "together the ranks cover each row once"
    for batches in ranks:  # per-rank batch = global batch / world size, except the last
        assert all(len(b) == batch // world for b in batches[:-1])
    # Rank pieces of global batch k are exactly batch k of the single-process loader, so a
    # DDP step averages the gradient over the same rows as a 1-process step.
    single = _rank_batches(n, batch, 1, shuffle)[0]
    for k, rows in enumerate(single):
        together = torch.cat([ranks[r][k] for r in range(world)])
        assert sorted(together.tolist()) == sorted(rows.tolist())


def test_a_last_batch_smaller_than_the_world_pads_the_empty_ranks():
    ranks = _rank_batches(9, 4, 4, shuffle=True)  # last global batch: 1 row for 4 ranks
    assert {len(b) for b in ranks} == {3}
    ids = sum((torch.cat(b).tolist() for b in ranks), [])
    assert set(ids) == set(range(9)) and len(ids) == 9 + 3  # 3 padding rows


def test_epochs_reshuffle_and_a_global_batch_must_split_evenly():
    first, second = _rank_batches(100, 8, 2, True, epoch=0), _rank_batches(100, 8, 2, True, 1)
    assert not torch.equal(first[0][0], second[0][0])
    with pytest.raises(ValueError, match="divisible"):
        BatchLoader(_columns(10), 5, shuffle=True, rank=0, world_size=2)


def test_datamodule_takes_rank_and_world_size_from_the_trainer():
    cfg = compose_config(["data.generator.n_rows=2000"])
    dm = WideDeepDataModule(OmegaConf.to_container(cfg.data), batch_size=64, eval_batch_size=100)
    dm.setup()
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)
    train_loader, val = dm.train_dataloader(), dm.val_dataloader()
    assert (train_loader.rank, train_loader.world_size) == (1, 2)
    assert {len(b) for b in list(train_loader)[:-1]} == {32}
    assert sum(len(b) for b in val) == len(dm.data.splits["valid"]) // 2


@pytest.mark.slow
def test_ddp_settings_are_checked_before_training(monkeypatch):
    validate(compose_config(["trainer=ddp"]))
    with pytest.raises(ConfigError, match="divisible"):
        validate(compose_config(["trainer=ddp", "trainer.devices=3", "data.batch_size=1024"]))
    sparse_on_gpu = ["trainer=ddp", "trainer.accelerator=gpu", "model.wide.sparse_min_rows=0"]
    with pytest.raises(ConfigError, match="gloo"):
        validate(compose_config(sparse_on_gpu))
    validate(compose_config([*sparse_on_gpu, "trainer.process_group_backend=gloo"]))
    with pytest.raises(ConfigError, match="strategy"):
        validate(compose_config(["trainer=ddp", "trainer.strategy=ddp_spawn"]))
    with pytest.raises(ConfigError, match="sweep"):
        validate(compose_config(["trainer=ddp"]), sweep=True)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")  # torchrun made the processes
    validate(compose_config(["trainer=ddp"]), sweep=True)  # made by torchrun: no re-launch


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),  # started by Lightning's launcher
        ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),  # torchrun
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),
        ({"SLURM_PROCID": "2"}, False),
    ],
)
def test_only_global_rank_zero_writes(monkeypatch, env, zero):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed.launched_as_rank_zero() is zero


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sparse_embedding_gradients_pass_through_ddp():
    """Plain DDP puts a FieldEmbedding's sparse gradient in a dense bucket and fails; the
    sparse-aware wrapper all-reduces it as sparse (a 1-process gloo group suffices)."""
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        table = FieldEmbedding([10, 6], dim=3, sparse_min_rows=0)
        model = distributed.SparseAwareDDP(table)
        model(torch.tensor([[1, 2], [3, 0]])).sum().backward()
        assert table.weight.grad.is_sparse
        dense = torch.zeros_like(table.weight)
        dense[[1, 3, 11]] = 1.0  # field 0: ids 1, 3 (rows 1, 3); field 1: id 2 (row 9 + 2)
        assert torch.equal(table.weight.grad.to_dense(), dense)
        plain = torch.nn.parallel.DistributedDataParallel(FieldEmbedding([10], 3, 0))
        with pytest.raises(NotImplementedError, match="Sparse"):
            plain(torch.tensor([[1]])).sum().backward()
    finally:
        dist.destroy_process_group()


def test_slurm_launcher_config_composes():
    """hydra/launcher=slurm composes (the plugin need not be installed to compose it)."""
    with initialize_config_module(config_module="widedeep.conf", version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "trainer=ddp_multinode", "trainer.devices=8"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == (
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    )
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (8, 8, 2)
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2


TINY = [
    "data.generator.n_rows=6000",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=512",
    # Sparse tables in both towers, FTRL + AdaGrad: the hardest case for DDP's all-reduce.
    "optim=paper",
    "model.wide.sparse_min_rows=0",
    "model.deep.sparse_min_rows=0",
]
# The DDP run sees the same global batches, so only the order of float sums differs
# (observed: identical to 1e-7). The stated tolerance leaves room for other BLAS builds.
TOLERANCE = 1e-3


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """``python -m widedeep.cli.train trainer=ddp`` (as widedeep-train runs it): Lightning starts
    rank 1 with the same command line; gloo; results as one process at the same global batch.
    """
    started = time.perf_counter()
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_PORT"):
        env.pop(key, None)
    ddp = subprocess.Popen(
        [sys.executable, "-m", "widedeep.cli.train", "trainer=ddp", *TINY, f"hydra.run.dir={run}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:  # the 1-process run in this process meanwhile
        single = train(compose_config(TINY, output_dir=str(tmp_path / "single")))
        # Ends when rank 1 closes the pipe too. A guard against a hang only: 17 s here, 3x that
        # beside two busy loops; 30 min is torch's own default process-group timeout.
        out, _ = ddp.communicate(timeout=1800)
    finally:
        ddp.kill()
    assert ddp.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "Error executing job" not in out, out[-3000:]
    assert "MEMBER: 2/2" in out and "distributed_backend=gloo" in out

    metrics = json.loads((run / "metrics.json").read_text())
    print(f"test AUC: 1 process {single['test']['auc']:.6f}, 2 {metrics['test']['auc']:.6f}")
    for split in ("val", "test"):
        for name in ("auc", "logloss"):
            assert metrics[split][name] == pytest.approx(single[split][name], abs=TOLERANCE)
    assert metrics["rows"] == single["rows"]
    ddp_scores = pl.read_parquet(run / "predictions.parquet")["logit"].to_numpy()
    one_scores = pl.read_parquet(tmp_path / "single" / "predictions.parquet")["logit"].to_numpy()
    assert abs(ddp_scores - one_scores).max() < 1e-3

    # Only rank 0 wrote outputs; the one file of rank 1 is its Hydra job log.
    names = {p.name for p in run.iterdir()}
    expected = {
        "config.yaml",
        "metrics.json",
        "predictions.parquet",
        "preprocessor",
        "checkpoints",
        ".hydra",
        "train.log",
    }
    assert expected <= names and names - expected <= {"train_ddp_process_1.log"}
    assert not list(run.glob("**/.*.tmp"))
    print(f"2-process DDP test: {time.perf_counter() - started:.1f} s")
