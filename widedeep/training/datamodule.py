"""The LightningDataModule: a dataset config in, whole-batch loaders out.

Two training loaders (``trainer.loader``): ``memory`` slices batches from the preloaded split
tensors (`BatchLoader`); ``stream`` reads the train split from the processed cache's parquet
row groups (`StreamLoader`), so it never has to fit in memory. Evaluation always uses the
in-memory valid / test splits; with ``data.selection`` "valid" is its part A, and part B
("valid_b", `widedeep.data.selection`) is served by no loader: only `train` scores it, at the
end. Under DDP every loader yields this process's shard of each global batch, with the same
number of batches on every rank.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from widedeep.data.columnar import ProcessedData
from widedeep.data.loader import BatchLoader, dist_rank_world
from widedeep.data.pipeline import load_data
from widedeep.data.selection import Selection, select_validation
from widedeep.data.streaming import StreamDataset, StreamLoader, open_cache

LOADERS = ("memory", "stream")


class WideDeepDataModule(pl.LightningDataModule):
    """Loads (or builds) a dataset once and serves rank-aware batches of it.

    ``batch_size`` and ``eval_batch_size`` are global: with world size W each process yields
    batches of ``batch_size / W`` rows.
    """

    def __init__(
        self,
        data_cfg: Mapping[str, Any],
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        seed: int = 0,
        loader: str = "memory",
        shuffle_buffer: int = 65536,
        loader_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if loader not in LOADERS:
            raise ValueError(f"trainer.loader must be one of {LOADERS}, got {loader!r}")
        self.data_cfg = data_cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.loader = loader
        self.shuffle_buffer = shuffle_buffer
        self.loader_workers = loader_workers
        self.pin_memory = pin_memory  # a GPU run: batches pinned for non-blocking copies
        self.data: ProcessedData | None = None
        self.train_files: list[Path] = []  # stream: the cached train split's parquet files

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        selection = Selection.from_config(self.data_cfg.get("selection"))
        if self.loader == "memory":
            data = load_data(self.data_cfg)
        else:  # valid / test in memory, train left on disk
            self.train_files, data = open_cache(self.data_cfg)
        # After loading: the A/B cut of the validation rows is no part of the cached data.
        self.data = select_validation(data, selection)

    def rank_world(self) -> tuple[int, int]:
        """(global rank, world size): the attached Trainer's, else torch.distributed's."""
        trainer = self.trainer
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        return dist_rank_world()

    def _loader(self, split: str, train: bool = False) -> BatchLoader | StreamLoader:
        if self.data is None:
            raise RuntimeError("WideDeepDataModule.setup() has not run")
        rank, world = self.rank_world()
        if train and self.loader == "stream":
            dataset = StreamDataset(
                self.train_files,
                self.data.schema,
                self.batch_size,
                shuffle_buffer=self.shuffle_buffer,
                seed=self.seed,
                rank=rank,
                world_size=world,
                num_workers=self.loader_workers,
            )
            return StreamLoader(dataset, pin_memory=self.pin_memory)
        return BatchLoader(
            self.data.splits[split],
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            rank=rank,
            world_size=world,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> BatchLoader | StreamLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("valid")

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test")
