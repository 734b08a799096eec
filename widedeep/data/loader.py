"""Seeded, per-epoch shuffled batches sliced from whole-column tensors."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from widedeep.core.batch import Batch
from widedeep.data.columnar import ColumnarData


class EpochPermutation:
    """A seeded permutation per epoch; Lightning calls ``set_epoch`` on a loader's sampler."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=gen)


class BatchLoader:
    """Iterable of `Batch` sliced from `ColumnarData`; usable as a Lightning dataloader.

    The same (seed, epoch) gives the same batches, so a resumed run sees the same data order.

    Data parallel (``world_size`` > 1): ``batch_size`` is the global batch. Every rank draws
    the same seeded permutation and cuts it into the same global batches; rank r yields the
    r-th of ``world_size`` equal pieces of each (``batch_size / world_size`` rows). So an
    epoch's rank shards are disjoint and together cover every row, every rank yields the same
    number of batches (DDP needs one gradient all-reduce per step on every rank), and a DDP
    step averages gradients over exactly the rows of the single-process run's step.
    The last, partial global batch is split as evenly as possible; only when it has fewer rows
    than ranks do the empty ranks get one padding row (the epoch's first rows), as
    `DistributedSampler` pads. Rank and world size are passed in, never guessed: `predict_split`
    uses this class on whole splits inside DDP processes too.
    """

    def __init__(
        self,
        data: ColumnarData,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size})")
        if shuffle and batch_size % world_size:
            # Unequal pieces would weigh rows differently in the averaged gradient.
            raise ValueError(
                f"data.batch_size={batch_size} (the global batch) must be divisible by the "
                f"number of processes ({world_size})"
            )
        self.data = data
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        # For a GPU: batches in page-locked memory, so that Batch.to copies them asynchronously.
        self.pin_memory = pin_memory
        # Lightning inspects `sampler` / `batch_sampler` as on a DataLoader, and calls
        # `sampler.set_epoch(epoch)` before every epoch.
        self.sampler = EpochPermutation(len(data), shuffle, seed)
        self.batch_sampler = None
        # (epoch, batches yielded in it): the position `state_dict` reports, and one to resume
        # from (set by `load_state_dict`, used by the next iteration of that epoch).
        self._position = (0, 0)
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        n = len(self.data) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def _bounds(self, k: int) -> tuple[int, int]:
        """This rank's positions ``[lo, hi)`` in the epoch order for global batch k."""
        start = k * self.batch_size
        m = min(self.batch_size, len(self.data) - start)
        lo = start + self.rank * m // self.world_size
        hi = start + (self.rank + 1) * m // self.world_size
        if lo == hi:  # fewer rows than ranks: pad with one row, so every rank has a batch
            lo, hi = self.rank % len(self.data), self.rank % len(self.data) + 1
        return lo, hi

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = self.sampler.epoch, self._start()
        pin = (lambda b: b.pin_memory()) if self.pin_memory else (lambda b: b)
        if not self.sampler.shuffle:
            # In order (evaluation): contiguous views, no gather copies.
            for k in range(start, len(self)):
                self._position = (epoch, k + 1)
                yield pin(self.data.slice(*self._bounds(k)))
            return
        order = self.sampler.indices()
        for k in range(start, len(self)):
            lo, hi = self._bounds(k)
            self._position = (epoch, k + 1)
            yield pin(self.data.take(order[lo:hi]))

    def _start(self) -> int:
        """The first batch of this iteration: past the loaded position if it is in this epoch."""
        resume, self._resume = self._resume, None
        return resume[1] if resume is not None and resume[0] == self.sampler.epoch else 0

    def state_dict(self) -> dict[str, int]:
        """Where the iteration is: ``{"epoch", "batch"}`` (batches yielded in that epoch).

        Lightning saves this in checkpoints and hands it back to `load_state_dict` on resume
        (it restarts loaders that have this pair), so a run resumed mid-epoch sees the rest of
        the same epoch's permutation, not that epoch from its start. Global batches, so the
        same position holds on every rank.
        """
        return {"epoch": self._position[0], "batch": self._position[1]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at ``state``: the next iteration of that epoch skips its first batches."""
        epoch, batch = int(state["epoch"]), int(state["batch"])
        self.sampler.set_epoch(epoch)
        self._position = self._resume = (epoch, batch)


def dist_rank_world() -> tuple[int, int]:
    """(global rank, world size) of this process: torch.distributed's if initialised, else
    (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
