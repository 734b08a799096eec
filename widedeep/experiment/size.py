"""The wide part's size as the paper states its claim: non-zero weights of the cross-product
features, counted apart from the per-id weights of the raw fields (and of bags).

Read from a run's best checkpoint, so that no training code changes (and no stored run is
invalidated) to count them: field k's id i lives at row ``offsets[k] + i`` of the wide
tower's one table (`FieldEmbedding`), fields first, then crosses, then bags.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from widedeep.core.schema import CategoricalField
from widedeep.nn.wide import WideTower
from widedeep.training.checkpoint import model_from_checkpoint

GROUPS = ("fields", "crosses", "bags")


class SpaceWeights(NamedTuple):
    """One id space of a wide tower: its group, its field and the weights of ids 1.. (the
    padding id 0 is no weight): ``weights[i - 1]`` is id i's, shape (cardinality - 1,)."""

    group: str
    field: CategoricalField
    weights: Tensor


def space_weights(wide: WideTower) -> list[SpaceWeights]:
    """Every id space of ``wide`` in table order (fields, crosses, bags), with its weights."""
    table, schema = wide.weights, wide.schema
    spaces = [("fields", f) for f in schema.categorical]
    spaces += [("crosses", f) for f in schema.crosses] + [("bags", f) for f in schema.bags]
    weight = table.weight.detach()
    out = []
    for k, (group, field) in enumerate(spaces):
        start, card = int(table.offsets[k]), int(table.cardinalities[k])
        out.append(SpaceWeights(group, field, weight[start + 1 : start + card, 0]))
    return out


def wide_nonzero_groups(checkpoint: str | Path) -> dict[str, int]:
    """Non-zero wide weights per group of id spaces (0 everywhere for a model without a wide
    tower). The padding row (id 0 of every field) is no weight and is not counted."""
    model, _ = model_from_checkpoint(checkpoint)
    counts = dict.fromkeys(GROUPS, 0)
    wide = getattr(model, "wide", None)
    for space in space_weights(wide) if wide is not None else ():
        counts[space.group] += int(torch.count_nonzero(space.weights))
    return counts
