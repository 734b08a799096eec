"""Shared fixtures: a tiny schema and random batches that follow it."""

from __future__ import annotations

import os

import pytest
import torch

from widedeep import BagField, Batch, CategoricalField, CrossField, Schema


@pytest.fixture(autouse=True, scope="session")
def _cache_outside_the_data_root(tmp_path_factory) -> None:
    """Processed-data caches go to a temporary folder, never into the (shared) data root."""
    os.environ["WIDEDEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("widedeep-cache"))


@pytest.fixture
def schema() -> Schema:
    return Schema(
        dense=("price", "age"),
        categorical=(
            CategoricalField("user", 12),
            CategoricalField("item", 9),
            CategoricalField("device", 4),
        ),
        crosses=(CrossField("user_x_item", 30, fields=("user", "item")),),
        bags=(BagField("genres", 7),),
    )


def random_batch(schema: Schema, size: int, seed: int = 0) -> Batch:
    """Ids drawn over each field's whole range, 0 (missing) included."""
    gen = torch.Generator().manual_seed(seed)

    def ids(fields):
        cols = [torch.randint(0, f.cardinality, (size,), generator=gen) for f in fields]
        return torch.stack(cols, 1) if cols else torch.zeros(size, 0, dtype=torch.long)

    bags = []
    for f in schema.bags:
        lengths = torch.randint(0, 4, (size,), generator=gen)
        values = torch.randint(0, f.cardinality, (int(lengths.sum()),), generator=gen)
        bags.append((values, torch.cumsum(lengths, 0) - lengths))
    return Batch(
        dense=torch.randn(size, schema.num_dense, generator=gen),
        categorical=ids(schema.categorical),
        crosses=ids(schema.crosses),
        label=torch.randint(0, 2, (size,), generator=gen).float(),
        bags=bags,
    )
