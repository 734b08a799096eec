"""deepctr-torch's WDL trained by its own ``fit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .common import field_names, time_optimizer_steps


def load() -> str:
    """Import deepctr-torch without its import-time version check (a web request)."""
    import requests

    def offline(*_args: Any, **_kwargs: Any) -> Any:
        raise requests.ConnectionError("the benchmark makes no web requests")

    # deepctr_torch/__init__ starts a thread that asks PyPI for newer releases; this process
    # never uses requests otherwise, so it stays patched.
    requests.get = offline
    import deepctr_torch

    return str(deepctr_torch.__version__)


class Row:
    """Builds WDL and compiles it with Adam; ``train`` runs one epoch of ``fit``."""

    def __init__(self, data: dict[str, np.ndarray], cards: list[int], settings: dict[str, Any]):
        load()
        from deepctr_torch.inputs import DenseFeat, SparseFeat
        from deepctr_torch.models import WDL

        dense_names, cat_names = field_names(data["dense"].shape[1], len(cards))
        sparse = [
            SparseFeat(name, vocabulary_size=card, embedding_dim=settings["embed_dim"])
            for name, card in zip(cat_names, cards, strict=True)
        ]
        dense = [DenseFeat(name, 1) for name in dense_names]
        self.x = {name: data["categorical"][:, j] for j, name in enumerate(cat_names)}
        self.x.update({name: data["dense"][:, j] for j, name in enumerate(dense_names)})
        self.y = data["label"]
        self.model = WDL(
            linear_feature_columns=sparse,  # the wide part: one-hot ids only
            dnn_feature_columns=sparse + dense,
            dnn_hidden_units=tuple(settings["hidden"]),
            # Its defaults add an L2 penalty over every embedding table to each step's loss;
            # the benchmark's model has none.
            l2_reg_linear=0.0,
            l2_reg_embedding=0.0,
            dnn_dropout=0.0,
            task="binary",
            device="cpu",
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["lr"])
        self.model.compile(self.optimizer, "binary_crossentropy", metrics=[])
        self.settings = settings

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def train(self, rows: int, on_step: Callable[[], None]) -> None:
        time_optimizer_steps(self.optimizer, on_step)
        x = {k: v[:rows] for k, v in self.x.items()}
        self.model.fit(x, self.y[:rows], batch_size=self.settings["batch_size"], verbose=0)

    def predict(self, rows: int) -> None:
        x = {k: v[:rows] for k, v in self.x.items()}
        self.model.predict(x, batch_size=self.settings["eval_batch_size"])
