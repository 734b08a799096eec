"""TorchRec: an EmbeddingBagCollection over the 26 fields with fbgemm's fused table-batched
embedding and its fused sparse optimizer (CPU), the benchmark's MLP and a linear part.

The fused optimizer updates the tables inside the backward (no gradient tensor for them).
fbgemm's CPU kernels have no fused Adam (SplitTableBatchedEmbeddingBagsCodegen on CPU takes
exact (row-wise) AdaGrad, SGD and RMSprop only), so the tables get fused exact AdaGrad and the
MLP and bias torch's AdaGrad: compare with widedeep-sparse-adagrad, the same optimizers in
widedeep. Runs in TorchRec's own venv (benchmarks/torchrec/setup.sh), never in widedeep's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import field_names

ADAGRAD_LR = 0.05  # the paper config's deep learning rate (widedeep-sparse-adagrad's too)


def tables(cards: list[int], dim: int, prefix: str) -> list[Any]:
    from torchrec import EmbeddingBagConfig, PoolingType

    _, names = field_names(0, len(cards))
    return [
        EmbeddingBagConfig(
            name=f"{prefix}_{name}",
            embedding_dim=dim,
            num_embeddings=card,
            feature_names=[name],
            pooling=PoolingType.SUM,
        )
        for name, card in zip(names, cards, strict=True)
    ]


class Model(nn.Module):
    def __init__(self, cards: list[int], num_dense: int, s: dict[str, Any]) -> None:
        from torchrec import EmbeddingBagCollection
        from torchrec.modules.fused_embedding_modules import fuse_embedding_optimizer

        super().__init__()
        cpu = torch.device("cpu")
        deep = EmbeddingBagCollection(tables(cards, s["embed_dim"], "deep"), device=cpu)
        # fbgemm wants dims in multiples of 4: the linear part's weight of an id is the sum of
        # its 4-wide row (still linear in the one-hot ids).
        wide = EmbeddingBagCollection(tables(cards, 4, "wide"), device=cpu)
        # fbgemm's fused exact AdaGrad: the rows a batch touched, updated inside the backward.
        fused = {"lr": ADAGRAD_LR}
        self.deep = fuse_embedding_optimizer(deep, torch.optim.Adagrad, fused, cpu)
        self.wide = fuse_embedding_optimizer(wide, torch.optim.Adagrad, fused, cpu)
        widths = [len(cards) * s["embed_dim"] + num_dense, *s["hidden"]]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, kjt: Any, dense: torch.Tensor) -> torch.Tensor:
        embedded = self.deep(kjt).values()  # (B, 26 * D), field by field
        linear = self.wide(kjt).values().sum(1)  # (B,): the one-hot ids' weights
        return self.mlp(torch.cat([embedded, dense], 1)).squeeze(1) + linear + self.bias


class Row:
    """The benchmark's Criteo-shaped model in TorchRec; ``train`` is one epoch of a plain loop."""

    def __init__(self, data: dict[str, np.ndarray], cards: list[int], settings: dict[str, Any]):
        import torchrec

        self.version = torchrec.__version__
        torch.manual_seed(settings["seed"])
        self.ids = torch.from_numpy(data["categorical"])
        self.dense = torch.from_numpy(data["dense"])
        self.label = torch.from_numpy(data["label"])
        _, self.keys = field_names(0, len(cards))
        self.model = Model(cards, self.dense.shape[1], settings)
        dense_params = [*self.model.mlp.parameters(), self.model.bias]
        self.optimizer = torch.optim.Adagrad(dense_params, lr=ADAGRAD_LR)
        self.s = settings

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def kjt(self, ids: torch.Tensor) -> Any:
        from torchrec import KeyedJaggedTensor

        batch = ids.shape[0]
        return KeyedJaggedTensor.from_lengths_sync(
            keys=self.keys,
            values=ids.t().reshape(-1),  # field-major: every key's ids in a row
            lengths=torch.ones(batch * len(self.keys), dtype=torch.int32),
        )

    def train(self, rows: int, on_step: Callable[..., None]) -> None:
        self.model.train()
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(self.s["seed"]))
        size = self.s["batch_size"]
        for start in range(0, rows, size):
            index = order[start : start + size]
            t0 = time.perf_counter()
            kjt = self.kjt(self.ids[index])
            logit = self.model(kjt, self.dense[index])
            loss = F.binary_cross_entropy_with_logits(logit, self.label[index])
            t1 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # the tables' fused optimizer steps in here
            t2 = time.perf_counter()
            self.optimizer.step()
            on_step((t1 - t0, t2 - t1, time.perf_counter() - t2))

    # no_grad, not inference_mode: fbgemm registers its CPU lookup under autograd only, and
    # inference_mode skips that dispatch key ("could not run ... with arguments from 'CPU'").
    @torch.no_grad()
    def predict(self, rows: int) -> None:
        self.model.eval()
        size = self.s["eval_batch_size"]
        for start in range(0, rows, size):
            part = slice(start, min(rows, start + size))
            torch.sigmoid(self.model(self.kjt(self.ids[part]), self.dense[part]))
