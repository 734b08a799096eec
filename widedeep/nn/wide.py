"""The wide tower: a sparse linear model over one-hot ids and cross-product ids."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from widedeep.core.schema import Schema
from widedeep.nn.embedding import FieldEmbedding


class WideTower(nn.Module):
    """Logistic regression over one-hot categorical ids, cross ids and bag ids.

    logit = bias + sum of one weight per active id (+ a linear term on dense fields).

    This is the "memorization" half of Wide & Deep: a weight for ``AND(user=42, item=7)`` can
    hold a rare exception that no low-rank model reproduces. All id spaces share one
    (rows, 1) table, so the forward pass is a single ``embedding_bag`` sum.

    Shapes: categorical (B, F), crosses (B, C), dense (B, N), bags [(L,), (B,)] -> logits (B,).

    Args:
        schema: the dataset's fields; every categorical field, cross and bag gets weights.
        use_dense: add a linear term on the dense features (off in the paper's wide part).
        bias: own a bias; off when a `WideDeep` holds the shared one.
        sparse_min_rows: sparse gradients for the weight table when it has at least this many
            rows (None: never). Needs an optimizer that takes them (FTRL, AdaGrad, SGD,
            SparseAdam).
    """

    def __init__(
        self,
        schema: Schema,
        use_dense: bool = False,
        bias: bool = True,
        sparse_min_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.schema = schema
        spaces = [*schema.categorical, *schema.crosses, *schema.bags]
        if not spaces and not (use_dense and schema.num_dense):
            raise ValueError("WideTower needs at least one categorical field, cross or bag")
        self.num_single = len(schema.categorical) + len(schema.crosses)
        # A linear model starts from zero: every weight is then the data's doing.
        self.weights = FieldEmbedding(
            [f.cardinality for f in spaces] or [2],
            dim=1,
            sparse_min_rows=sparse_min_rows,
            init_std=0.0,
        )
        self.dense = nn.Linear(schema.num_dense, 1, bias=False) if use_dense else None
        if self.dense is not None:
            nn.init.zeros_(self.dense.weight)
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(
        self,
        categorical: Tensor,
        crosses: Tensor,
        dense: Tensor | None = None,
        bags: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        ids = torch.cat([categorical, crosses], dim=1)  # (B, F + C)
        logit = self.weights.pooled(ids).squeeze(1)  # (B,)
        for k, (values, offsets) in enumerate(bags or []):
            logit = logit + self.weights.bag(self.num_single + k, values, offsets).squeeze(1)
        if self.dense is not None and dense is not None:
            logit = logit + self.dense(dense).squeeze(1)
        if self.bias is not None:
            logit = logit + self.bias
        return logit

    def num_weights(self) -> int:
        """Learnable weights: one per id of every field, cross and bag, plus the dense term."""
        count = self.weights.num_rows - 1
        return count + (self.dense.weight.numel() if self.dense is not None else 0)

    def num_nonzero(self) -> int:
        """Non-zero weights: the size of a wide model trained with L1 (padding row excluded)."""
        count = int(torch.count_nonzero(self.weights.weight.detach()[1:]))
        if self.dense is not None:
            count += int(torch.count_nonzero(self.dense.weight.detach()))
        return count
