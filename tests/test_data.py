"""Batches sliced from column tensors: in order (views) and shuffled (gathers) agree."""

from __future__ import annotations

import torch

from widedeep import BatchLoader, ColumnarData


def _data(n: int = 50, bags: bool = False) -> ColumnarData:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 3, (n,), generator=gen)
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    return ColumnarData(
        dense=torch.randn(n, 2, generator=gen),
        categorical=torch.randint(0, 5, (n, 3), generator=gen),
        crosses=torch.randint(0, 7, (n, 1), generator=gen),
        label=torch.randint(0, 2, (n,), generator=gen).float(),
        bags=[(torch.randint(0, 4, (int(lengths.sum()),), generator=gen), offsets)] if bags else [],
    )


def test_in_order_batches_equal_gathered_rows():
    for bags in (False, True):
        data = _data(bags=bags)
        batches = list(BatchLoader(data, 16))
        assert [len(b) for b in batches] == [16, 16, 16, 2]
        for k, batch in enumerate(batches):
            index = torch.arange(16 * k, min(16 * (k + 1), len(data)))
            expected = data.take(index)
            for name in ("dense", "categorical", "crosses", "label", "row_id"):
                assert torch.equal(getattr(batch, name), getattr(expected, name)), name


def test_shuffled_epochs_cover_every_row_once_and_differ():
    loader = BatchLoader(_data(), 16, shuffle=True, seed=3)
    first = torch.cat([b.row_id for b in loader])
    loader.sampler.set_epoch(1)
    second = torch.cat([b.row_id for b in loader])
    assert sorted(first.tolist()) == list(range(50)) == sorted(second.tolist())
    assert not torch.equal(first, second)
    loader.sampler.set_epoch(0)
    assert torch.equal(first, torch.cat([b.row_id for b in loader]))  # same seed, same order
