"""Batches sliced from column tensors: in order (views) and shuffled (gathers) agree."""

from __future__ import annotations

import pytest
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


def test_synthetic_exceptions_replay_uniformly_or_with_a_long_tail():
    import numpy as np

    from widedeep.data.readers.synthetic import SyntheticConfig, generate

    def replays(**kw) -> np.ndarray:
        frame = generate(SyntheticConfig(n_rows=40_000, n_exceptions=200, **kw))
        rows = frame.filter(frame["is_exception"])
        return rows.group_by("user", "item").len()["len"].to_numpy()

    uniform, tail = replays(), replays(exception_zipf=1.2)
    spread = {k: np.quantile(v, 0.9) / np.median(v) for k, v in (("u", uniform), ("t", tail))}
    assert spread["u"] < 2  # every pair seen about as often
    assert spread["t"] > 4  # a few common pairs, a long tail of rare ones
    assert (tail <= 2).sum() > (uniform <= 2).sum()
    with pytest.raises(ValueError, match="exception_zipf"):
        SyntheticConfig(exception_zipf=-1)
