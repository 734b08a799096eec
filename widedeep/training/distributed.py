"""Data-parallel settings: the Lightning strategy from ``cfg.trainer``, launch checks, ranks.

``trainer=ddp`` uses Lightning's ``ddp`` strategy. Started as one process (``widedeep-train``,
``python -m widedeep.cli.train``), Lightning re-runs the same command line for local ranks
1..devices-1 (with Hydra, in the same run directory). Under torchrun or SLURM the processes
are created outside and Lightning only joins them. From Python (tests, notebooks), run the
command line in a subprocess: ``ddp_spawn`` / ``ddp_fork`` start new processes for every fit,
validate and test call, and a spawned ``validate`` after a spawned ``fit`` reported a wrong
validation log loss in our trial (AUC and predictions were right), so `check` refuses them.

Sparse embedding gradients (``model.*.sparse_min_rows``) work under DDP with gloo: PyTorch's
DDP all-reduces a parameter's gradient as sparse only if it knows in advance that it will be
sparse, which it infers for ``nn.Embedding(sparse=True)`` alone, not for our `FieldEmbedding`.
`SparseAwareDDP` tells it. NCCL has no sparse all-reduce: `check` refuses that combination.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from widedeep.nn.embedding import FieldEmbedding


class SparseAwareDDP(DistributedDataParallel):
    """DDP that all-reduces the gradients of sparse `FieldEmbedding` tables as sparse tensors
    (summed, then divided by the world size, as DDP does for dense ones)."""

    def _build_params_for_reducer(self) -> tuple[list[nn.Parameter], list[bool]]:
        params, expect_sparse = super()._build_params_for_reducer()
        modules = self.module.modules()
        sparse = {id(m.weight) for m in modules if isinstance(m, FieldEmbedding) and m.sparse}
        return params, [e or id(p) in sparse for p, e in zip(params, expect_sparse, strict=True)]


class SparseAwareDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy, wrapping the model in `SparseAwareDDP`."""

    def _setup_model(self, model: nn.Module) -> DistributedDataParallel:
        # CPU (gloo) or one device per process: no CUDA stream dance needed for the sparse path.
        return SparseAwareDDP(model, device_ids=self.determine_ddp_device_ids(), **self._ddp_kwargs)


STRATEGIES = ("auto", "ddp")


def is_ddp(trainer_cfg: Mapping[str, Any]) -> bool:
    return str(trainer_cfg.get("strategy", "auto")).startswith("ddp")


def backend(trainer_cfg: Mapping[str, Any]) -> str:
    """The process-group backend: ``process_group_backend``, else nccl on GPUs, gloo on CPU."""
    chosen, accelerator = trainer_cfg.get("process_group_backend"), trainer_cfg.get("accelerator")
    if chosen:
        return str(chosen)
    if accelerator == "auto":
        import torch

        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if accelerator in ("gpu", "cuda") else "gloo"


def build_strategy(trainer_cfg: Mapping[str, Any]) -> Any:
    """``trainer.strategy`` as a Lightning strategy (name or object)."""
    if not is_ddp(trainer_cfg):
        return str(trainer_cfg.get("strategy", "auto"))
    return SparseAwareDDPStrategy(process_group_backend=backend(trainer_cfg))


def check(cfg: Mapping[str, Any], sweep: bool = False) -> str | None:
    """Why this DDP configuration cannot work (None if it can). ``cfg``: the whole config;
    ``sweep``: whether the process runs a job of a local Hydra sweep (the command line knows)."""
    trainer, model = cfg["trainer"], cfg["model"]
    if trainer.get("strategy", "auto") not in STRATEGIES:
        return f"trainer.strategy={trainer.get('strategy')!r}: must be one of {STRATEGIES}"
    if not is_ddp(trainer):
        return None
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes", 1)
    batch = cfg["data"]["batch_size"]
    if isinstance(devices, int) and isinstance(batch, int) and batch % (devices * nodes):
        return (
            f"data.batch_size={batch} is the global batch: it must be divisible by "
            f"trainer.devices x trainer.num_nodes = {devices * nodes} processes"
        )
    kind = str(model.get("kind", "wide_deep"))
    towers = {t: model.get(t) or {} for t in ("wide", "deep") if t in kind}
    sparse = [t for t, settings in towers.items() if settings.get("sparse_min_rows") is not None]
    if sparse and backend(trainer) != "gloo":
        # DDP all-reduces sparse gradients with gloo only; NCCL has no sparse all-reduce.
        return (
            f"model.{sparse[0]}.sparse_min_rows (sparse gradients) needs "
            f"trainer.process_group_backend=gloo under DDP, not {backend(trainer)!r}; "
            "or set the sparse_min_rows to null"
        )
    if sweep and not launched_externally():
        # Lightning re-runs the command line for ranks >= 1: with -m, the whole sweep.
        return (
            "trainer.strategy=ddp cannot run under a local hydra -m sweep (its rank >= 1 "
            "processes would re-run the sweep); use hydra/launcher=slurm, or torchrun per job"
        )
    return None


def launched_externally() -> bool:
    """Whether torchrun, SLURM (srun) or LSF created this process, as Lightning detects it."""
    from pytorch_lightning.plugins.environments import (
        LSFEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    return any(env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment))


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0, from its launcher's environment: usable before
    a `Trainer` exists (then ``trainer.is_global_zero`` says it). True in the process that
    will start the others.

    torchrun sets RANK, srun SLURM_PROCID; Lightning's own launcher gives the processes it
    starts LOCAL_RANK and, on other nodes, NODE_RANK.
    """
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    node = os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))
    return int(node) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0
