"""Several categorical id spaces stored in one embedding table."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from widedeep.core.schema import NUM_RESERVED_IDS, PADDING_ID


class SparseLookup(torch.autograd.Function):
    """``F.embedding(rows, weight, padding_idx=0, sparse=True)`` with a cheaper backward.

    torch's sparse backward returns one gradient entry per looked-up id (B*K of them, duplicates
    included) and drops the padding entries with a boolean-mask gather over all B*K*D values in
    every step; every sparse optimizer then coalesces it (sorts the ids and sums duplicates).
    Here the backward sums duplicates itself: one sort of the B*K row numbers (`torch.unique`)
    and an `index_add_` of the values. The gradient comes out coalesced, so the optimizer's
    `coalesce()` is free (`mark_coalesced` keeps the flag through autograd's accumulation,
    which drops it): lookup + backward + coalesce at 4096 x 26 x 16 take about two thirds of
    torch's time (benchmarks/micro.py lookup). The padding row's summed entry is zeroed: a
    zero-valued row-0 entry leaves row 0 where it is under every sparse optimizer (SGD, AdaGrad,
    SparseAdam, FTRL: their state for it stays zero), so the padding row keeps its meaning.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, rows: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.table_shape = weight.shape  # type: ignore[attr-defined]
        return F.embedding(rows, weight)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[None, Tensor]:
        (rows,) = ctx.saved_tensors  # type: ignore[attr-defined]
        shape = ctx.table_shape  # type: ignore[attr-defined]
        unique, position = torch.unique(rows.reshape(-1), sorted=True, return_inverse=True)
        values = grad.new_zeros(len(unique), shape[1])  # (U, D): one entry per distinct row
        # contiguous: index_add_ falls back to a scatter three times slower for strided sources.
        values.index_add_(0, position, grad.reshape(-1, shape[1]).contiguous())
        if len(unique) and unique[0] == PADDING_ID:  # sorted: row 0 comes first if present
            values[0] = 0.0
        return None, torch.sparse_coo_tensor(
            unique.unsqueeze(0), values, shape, is_coalesced=True, check_invariants=False
        )


def mark_coalesced(weight: Tensor) -> None:
    """Flag ``weight.grad`` coalesced when it is: a post-accumulate-grad hook.

    Autograd stores a sparse gradient under a new tensor without its coalesced flag, so every
    optimizer would sort it again. A 2-D gradient whose rows are strictly increasing is
    coalesced by definition; anything else (a sum of two lookups' gradients, torch's own
    embedding backward) keeps its flag and is coalesced by the optimizer as usual.
    """
    grad = weight.grad
    if grad is None or not grad.is_sparse or grad.is_coalesced() or grad.sparse_dim() != 1:
        return
    rows = grad._indices()[0]
    if bool((rows[1:] > rows[:-1]).all()):
        grad._coalesced_(True)


class FieldEmbedding(nn.Module):
    """One table for K id spaces (fields), each shifted by its own offset.

    One table instead of K keeps a batch's lookup to a single kernel call, which is what makes
    26 Criteo fields cheap. Id 0 (missing) of every field maps to the shared row 0, which is
    the padding row: it stays zero and receives no gradient. Id ``i >= 1`` of field ``k`` maps to
    row ``offsets[k] + i``, so every field keeps its own row for id 1 (unseen).

    Args:
        cardinalities: ids per field, reserved ids included.
        dim: D, the embedding dimension (1 for a wide tower's weights).
        sparse_min_rows: produce sparse gradients when the table has at least this many rows
            (None: never; 0: always). A dense optimizer step touches every row of a table each
            step; with sparse gradients, FTRL / SparseAdam / AdaGrad touch only the batch's rows.
        init_std: std of the normal init; 0 starts at zero (a linear model's usual start).
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        dim: int,
        sparse_min_rows: int | None = None,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"embedding dim must be >= 1, got {dim}")
        cards = torch.tensor(list(cardinalities), dtype=torch.long)
        if (cards < NUM_RESERVED_IDS).any():
            raise ValueError(f"every cardinality must be >= {NUM_RESERVED_IDS}: {cardinalities}")
        # Field k's id i lives at row offsets[k] + i; id 0 of every field is row 0.
        starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(cards - 1, 0)[:-1]])
        self.register_buffer("offsets", starts, persistent=False)
        self.register_buffer("cardinalities", cards, persistent=False)
        self.num_rows = int(1 + (cards - 1).sum())
        self.weight = nn.Parameter(torch.empty(self.num_rows, dim))
        self.sparse = sparse_min_rows is not None and self.num_rows >= sparse_min_rows
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init_std > 0:
                nn.init.normal_(self.weight, std=self.init_std)
            else:
                self.weight.zero_()
            self.weight[PADDING_ID].zero_()

    @property
    def num_fields(self) -> int:
        return int(self.offsets.numel())

    def rows(self, ids: Tensor) -> Tensor:
        """(B, K) ids of the first K fields -> (B, K) rows of the shared table."""
        return torch.where(ids > 0, ids + self.offsets[: ids.shape[1]], 0)

    def forward(self, ids: Tensor) -> Tensor:
        """(B, K) ids -> (B, K, D) vectors."""
        rows = self.rows(ids)
        if self.sparse and self.training and torch.is_grad_enabled() and self.weight.requires_grad:
            self._hook_coalesced()
            return SparseLookup.apply(rows, self.weight)
        return F.embedding(rows, self.weight, padding_idx=PADDING_ID, sparse=self.sparse)

    def _hook_coalesced(self) -> None:
        # Here, not in __init__: a deep copy or a swapped-in Parameter has no hook yet. The
        # weak reference names the hooked tensor without registering it as a parameter.
        hooked = getattr(self, "_coalesced_hook_on", None)
        if hooked is None or hooked() is not self.weight:
            self.weight.register_post_accumulate_grad_hook(mark_coalesced)
            self._coalesced_hook_on = weakref.ref(self.weight)

    def pooled(self, ids: Tensor) -> Tensor:
        """(B, K) ids -> (B, D): the sum over fields."""
        # Not F.embedding_bag: its CPU kernel with a padding_idx is ~20x slower than a lookup
        # and a sum (measured by benchmarks/throughput.py), for the same values and gradients.
        # The mask keeps missing ids out even if someone wrote into the padding row.
        return (self(ids) * (ids > 0).unsqueeze(-1)).sum(1)

    def bag(self, field_index: int, values: Tensor, offsets: Tensor, mode: str = "sum") -> Tensor:
        """A multi-valued field: values (L,) and offsets (B,) -> (B, D) pooled with ``mode``."""
        rows = torch.where(values > 0, values + self.offsets[field_index], 0)
        return F.embedding_bag(
            rows, self.weight, offsets, mode=mode, padding_idx=PADDING_ID, sparse=self.sparse
        )

    def extra_repr(self) -> str:
        return (
            f"fields={self.num_fields}, rows={self.num_rows}, dim={self.weight.shape[1]}, "
            f"sparse={self.sparse}"
        )
