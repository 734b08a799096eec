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


def _python_rows(data: ColumnarData) -> list[dict]:
    """Every row of ``data`` as plain Python lists, bags read from the CSR columns by hand:
    the reference the loaders' tensor gathers are checked against."""
    rows = []
    for i in range(len(data)):
        bags = []
        for values, offsets in data.bags:
            bags.append([int(values[j]) for j in range(int(offsets[i]), int(offsets[i + 1]))])
        rows.append(
            {
                "dense": data.dense[i].tolist(),
                "categorical": data.categorical[i].tolist(),
                "crosses": data.crosses[i].tolist(),
                "label": float(data.label[i]),
                "bags": bags,
            }
        )
    return rows


def _batch_rows(batch) -> list[dict]:
    """A batch as the same plain rows (its bags: values and per-row start offsets)."""
    rows = []
    for k in range(len(batch)):
        bags = []
        for values, offsets in batch.bags:
            ends = [*offsets[1:].tolist(), len(values)]
            bags.append(values[int(offsets[k]) : ends[k]].tolist())
        rows.append(
            {
                "dense": batch.dense[k].tolist(),
                "categorical": batch.categorical[k].tolist(),
                "crosses": batch.crosses[k].tolist(),
                "label": float(batch.label[k]),
                "bags": bags,
            }
        )
    return rows


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("bags", [False, True])
def test_batches_hold_the_rows_a_plain_python_gather_reads(bags, shuffle):
    data = _data(bags=bags)
    assert not bags or len(data.bags[0][0]) > 0  # some rows have bags, some have none
    reference = _python_rows(data)
    batches = list(BatchLoader(data, 16, shuffle=shuffle, seed=3))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    seen = torch.cat([b.row_id for b in batches]).tolist()
    assert sorted(seen) == list(range(len(data)))
    for batch in batches:
        assert _batch_rows(batch) == [reference[i] for i in batch.row_id.tolist()]
    subset = data.subset(torch.tensor([7, 3, 3, 40]))  # a split of rows, in CSR again
    assert _python_rows(subset) == [reference[i] for i in (7, 3, 3, 40)]


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
