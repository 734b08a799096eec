"""The deep tower: per-field embeddings and dense features through an MLP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from widedeep.core.schema import Schema
from widedeep.nn.embedding import FieldEmbedding

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden size, then Linear(., 1)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for width in hidden:
        if width < 1:
            raise ValueError(f"hidden sizes must be >= 1, got {list(hidden)}")
        layers.append(nn.Linear(in_dim, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        # In place where the activation can be: the Linear / BatchNorm before it does not need
        # its output for the backward, and one (B, width) buffer less per layer saves a few
        # percent of the MLP's inference time at width 400 (benchmarks/micro.py relu).
        act = ACTIVATIONS[activation]
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.LeakyReLU) else act())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


class DeepTower(nn.Module):
    """Embeddings of every categorical field and bag, concatenated with the dense features,
    through an MLP to one logit: the "generalization" half of Wide & Deep.

    Fields with the same embedding dimension share one table (one lookup per group). Crosses are
    the wide tower's business: the deep tower learns interactions itself.

    Shapes: categorical (B, F) -> (B, F, D) embedded; bags mean-pooled to (B, D_k);
    concatenated with dense (B, N) to (B, F*D + sum D_k + N); MLP -> logits (B,).

    Args:
        schema: the dataset's fields.
        embedding_dim: D for every field without an override.
        embedding_dims: per-field overrides of D, by field name.
        hidden: MLP hidden sizes, e.g. (400, 400, 400).
        activation, dropout, batch_norm: MLP options.
        bias: whether the output layer has a bias; off when a `WideDeep` holds the shared one.
        sparse_min_rows: sparse gradients for embedding tables of at least this many rows.
    """

    def __init__(
        self,
        schema: Schema,
        embedding_dim: int = 16,
        embedding_dims: Mapping[str, int] | None = None,
        hidden: Sequence[int] = (256, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        bias: bool = True,
        sparse_min_rows: int | None = None,
    ) -> None:
        super().__init__()
        overrides = dict(embedding_dims or {})
        names = {f.name for f in (*schema.categorical, *schema.bags)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"embedding_dims names unknown fields {unknown}; fields: {sorted(names)}"
            )
        self.schema = schema
        dims = [overrides.get(f.name, embedding_dim) for f in schema.categorical]
        # Group single-valued fields by dimension: one table, one lookup per group.
        self.groups: list[list[int]] = []
        self.tables = nn.ModuleList()
        for dim in sorted(set(dims)):
            members = [i for i, d in enumerate(dims) if d == dim]
            self.groups.append(members)
            cards = [schema.categorical[i].cardinality for i in members]
            self.tables.append(FieldEmbedding(cards, dim, sparse_min_rows))
        for k, members in enumerate(self.groups):
            self.register_buffer(f"_group{k}", torch.tensor(members), persistent=False)
        self.bag_tables = nn.ModuleList(
            FieldEmbedding([f.cardinality], overrides.get(f.name, embedding_dim), sparse_min_rows)
            for f in schema.bags
        )
        in_dim = sum(dims) + sum(t.weight.shape[1] for t in self.bag_tables) + schema.num_dense
        if in_dim == 0:
            raise ValueError("DeepTower needs at least one categorical, bag or dense field")
        self.mlp = mlp(in_dim, hidden, activation, dropout, batch_norm)
        if not bias:
            self.mlp[-1].bias = None

    def forward(
        self,
        categorical: Tensor,
        crosses: Tensor | None = None,
        dense: Tensor | None = None,
        bags: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        batch = categorical.shape[0]
        parts: list[Tensor] = []
        for k, table in enumerate(self.tables):
            # With a single group the fields are already in order: skip the copy.
            ids = (
                categorical
                if len(self.tables) == 1
                else (categorical.index_select(1, getattr(self, f"_group{k}")))
            )  # (B, F_k)
            parts.append(table(ids).reshape(batch, -1))  # (B, F_k * D_k)
        for table, (values, offsets) in zip(self.bag_tables, bags or [], strict=True):
            parts.append(table.bag(0, values, offsets, mode="mean"))  # (B, D_k)
        if self.schema.num_dense:
            if dense is None:
                raise ValueError(f"DeepTower expects dense features {self.schema.dense}")
            parts.append(dense)  # (B, N)
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
