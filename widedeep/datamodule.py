"""The LightningDataModule: a dataset config in, whole-batch loaders out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl

from .data import BatchLoader, ProcessedData
from .pipeline import load_data


class WideDeepDataModule(pl.LightningDataModule):
    """Loads (or builds) a dataset once and slices batches from its preloaded tensors."""

    def __init__(
        self,
        data_cfg: Mapping[str, Any],
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.data_cfg = data_cfg
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.data: ProcessedData | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = load_data(self.data_cfg)

    def _loader(self, split: str, train: bool = False) -> BatchLoader:
        if self.data is None:
            raise RuntimeError("WideDeepDataModule.setup() has not run")
        return BatchLoader(
            self.data.splits[split],
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
        )

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("valid")

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test")
