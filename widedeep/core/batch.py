"""One mini-batch: a small typed bundle of tensors, in the column order of a `Schema`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from widedeep.core.schema import Schema


@dataclass
class Batch:
    """Tensors of one batch of B rows.

    dense:       (B, N) float32
    categorical: (B, F) int64, ids per field (0 = missing, 1 = unseen)
    crosses:     (B, C) int64, ids per cross feature
    label:       (B,)   float32 in {0, 1}
    bags:        one ``(values (L,) int64, offsets (B,) int64)`` pair per bag field, the
                 ``torch.nn.EmbeddingBag`` layout: row b holds ``values[offsets[b]:offsets[b+1]]``
    row_id:      (B,)   int64, the row's position in its split (for saved predictions)
    """

    dense: Tensor
    categorical: Tensor
    crosses: Tensor
    label: Tensor
    bags: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    row_id: Tensor | None = None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def inputs(self) -> dict[str, object]:
        """Keyword arguments for `WideTower`, `DeepTower` and `WideDeep`."""
        return {
            "categorical": self.categorical,
            "crosses": self.crosses,
            "dense": self.dense,
            "bags": self.bags,
        }

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> Batch:
        """The batch on ``device``. ``non_blocking`` None: asynchronous copies exactly when they
        can be, from pinned memory (`pin_memory`) to a GPU; Lightning calls ``to(device)``."""
        if non_blocking is None:
            non_blocking = torch.device(device).type == "cuda" and self.label.is_pinned()

        def move(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return self._map(move)

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory, for asynchronous host-to-GPU copies (needs CUDA)."""
        return self._map(lambda t: t.pin_memory())

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        return Batch(
            dense=fn(self.dense),
            categorical=fn(self.categorical),
            crosses=fn(self.crosses),
            label=fn(self.label),
            bags=[(fn(v), fn(o)) for v, o in self.bags],
            row_id=None if self.row_id is None else fn(self.row_id),
        )


def random_batch(schema: Schema, size: int, seed: int = 0, min_bag_length: int = 0) -> Batch:
    """A batch following ``schema`` with ids drawn over each field's whole range (0 = missing
    included), bags of ``min_bag_length`` to 3 values and random labels: for tests and for the
    example inputs of an export."""
    gen = torch.Generator().manual_seed(seed)

    def ids(fields: tuple) -> Tensor:
        cols = [torch.randint(0, f.cardinality, (size,), generator=gen) for f in fields]
        return torch.stack(cols, 1) if cols else torch.zeros(size, 0, dtype=torch.long)

    bags = []
    for f in schema.bags:
        lengths = torch.randint(min_bag_length, 4, (size,), generator=gen)
        values = torch.randint(0, f.cardinality, (int(lengths.sum()),), generator=gen)
        bags.append((values, torch.cumsum(lengths, 0) - lengths))
    return Batch(
        dense=torch.randn(size, schema.num_dense, generator=gen),
        categorical=ids(schema.categorical),
        crosses=ids(schema.crosses),
        label=torch.randint(0, 2, (size,), generator=gen).float(),
        bags=bags,
    )
