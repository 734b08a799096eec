"""The wide part's size as the paper states its claim: non-zero weights of the cross-product
features, counted apart from the per-id weights of the raw fields (and of bags).

Read from a run's best checkpoint, so that no training code changes (and no stored run is
invalidated) to count them: field k's id i lives at row ``offsets[k] + i`` of the wide
tower's one table (`FieldEmbedding`), fields first, then crosses, then bags.
"""

from __future__ import annotations

from pathlib import Path

import torch

from widedeep.training.checkpoint import model_from_checkpoint

GROUPS = ("fields", "crosses", "bags")


def wide_nonzero_groups(checkpoint: str | Path) -> dict[str, int]:
    """Non-zero wide weights per group of id spaces (0 everywhere for a model without a wide
    tower). The padding row (id 0 of every field) is no weight and is not counted."""
    model, _ = model_from_checkpoint(checkpoint)
    wide = getattr(model, "wide", None)
    if wide is None:
        return dict.fromkeys(GROUPS, 0)
    table = wide.weights
    schema = wide.schema
    sizes = {
        "fields": len(schema.categorical),
        "crosses": len(schema.crosses),
        "bags": len(schema.bags),
    }
    nonzero = (table.weight.detach() != 0).any(dim=1)  # (rows,)
    counts, k = {}, 0
    for group in GROUPS:
        total = 0
        for _ in range(sizes[group]):
            start, card = int(table.offsets[k]), int(table.cardinalities[k])
            total += int(torch.count_nonzero(nonzero[start + 1 : start + card]))
            k += 1
        counts[group] = total
    return counts
