"""data.selection: the validation rows cut into A ("valid") and B ("valid_b"); train() with it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from widedeep import BagField, CategoricalField, Schema
from widedeep.cli.config import compose_config
from widedeep.data import cache
from widedeep.data.columnar import ColumnarData, ProcessedData
from widedeep.data.pipeline import _reader, data_root, load_data
from widedeep.data.selection import Selection, select_validation, selection_mask
from widedeep.training.predict import split_scores
from widedeep.training.run import ConfigError, train, validate

TINY = [
    "data.generator.n_rows=3000",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "data.batch_size=256",
    "model.deep.hidden=[32]",
]


def _split(n: int, rate: float, seed: int) -> ColumnarData:
    """n rows whose dense column is the row's position (its identity) and a bag of 0-2 ids."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 3, (n,), generator=gen)
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    return ColumnarData(
        dense=torch.arange(n, dtype=torch.float32)[:, None],
        categorical=torch.randint(0, 5, (n, 1), generator=gen),
        crosses=torch.zeros(n, 0, dtype=torch.long),
        label=(torch.rand(n, generator=gen) < rate).float(),
        bags=[(torch.randint(0, 6, (int(lengths.sum()),), generator=gen), offsets)],
    )


@pytest.fixture
def data() -> ProcessedData:
    schema = Schema(
        dense=("pos",), categorical=(CategoricalField("c", 5),), bags=(BagField("b", 6),)
    )
    splits = {
        "train": _split(500, 0.3, 0),
        "valid": _split(401, 0.23, 1),
        "test": _split(99, 0.3, 2),
    }
    extras = {s: pl.DataFrame({"pos": np.arange(len(d))}) for s, d in splits.items()}
    info = {"rows": {s: len(d) for s, d in splits.items()}}
    return ProcessedData(schema=schema, splits=splits, info=info, extras=extras)


def _rows(split: ColumnarData) -> np.ndarray:
    return split.dense[:, 0].long().numpy()


def test_a_and_b_partition_the_validation_rows_stratified(data):
    ratio = 0.37
    out = select_validation(data, Selection(ratio, seed=3))
    a, b = _rows(out.splits["valid"]), _rows(out.splits["valid_b"])
    assert not set(a) & set(b)
    assert sorted([*a, *b]) == list(range(len(data.splits["valid"])))
    # Source order kept within each part, so row_id is the position within the split.
    assert (np.diff(a) > 0).all() and (np.diff(b) > 0).all()
    label = data.splits["valid"].label.numpy()
    for cls in (0, 1):
        in_b = (label[b] == cls).sum()
        assert abs(in_b - ratio * (label == cls).sum()) <= 1, cls
    # Every column and the bags follow their rows; extras alike.
    whole = data.splits["valid"]
    for part, rows in (("valid", a), ("valid_b", b)):
        got, want = out.splits[part], whole.take(torch.from_numpy(rows))
        assert torch.equal(got.categorical, want.categorical)
        assert torch.equal(got.label, want.label)
        gathered = got.take(torch.arange(len(got)))
        assert torch.equal(gathered.bags[0][0], want.bags[0][0])
        assert torch.equal(gathered.bags[0][1], want.bags[0][1])
        assert got.bags[0][1][-1] == len(got.bags[0][0])  # CSR: n + 1 offsets
        assert out.extras[part]["pos"].to_list() == rows.tolist()
    assert out.info["rows"] == {"train": 500, "valid": len(a), "test": 99, "valid_b": len(b)}
    assert out.info["selection"] == {
        "ratio": ratio,
        "seed": 3,
        "rows": {"valid": len(a), "valid_b": len(b)},
    }


def test_train_and_test_are_untouched(data):
    out = select_validation(data, Selection(0.5))
    assert out.splits["train"] is data.splits["train"] and out.splits["test"] is data.splits["test"]
    assert out.extras["test"] is data.extras["test"]
    assert select_validation(data, None) is data


def test_split_is_seeded():
    label = (np.random.default_rng(0).random(1000) < 0.2).astype(np.float32)
    same = selection_mask(label, 0.5, seed=7), selection_mask(label, 0.5, seed=7)
    assert (same[0] == same[1]).all()
    assert (selection_mask(label, 0.5, seed=8) != same[0]).any()
    # numpy's Generator, not a hash: this exact draw on every machine and polars version.
    drawn = np.flatnonzero(selection_mask(label[:20], 0.5, 0)).tolist()
    assert drawn == [0, 2, 4, 5, 6, 7, 9, 11, 14, 15, 16]


@pytest.mark.slow
def test_a_bad_ratio_fails_in_one_line_naming_it(data):
    # 401 rows at a 23% click rate: 0.001 of each class rounds to no row of B.
    with pytest.raises(ValueError, match=r"data\.selection\.ratio=0\.001: valid_b has no") as err:
        select_validation(data, Selection(0.001))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"data\.selection\.ratio=0\.999: valid has no"):
        select_validation(data, Selection(0.999))
    for bad in (0, 1, 1.5, "half", True):
        with pytest.raises(ValueError, match=r"data\.selection\.ratio"):
            Selection.from_config({"ratio": bad})
    for override, key in [
        ("data.selection={ratio: 1.5}", "data.selection.ratio"),
        ("data.selection={ratio: 0}", "data.selection.ratio"),
        ("data.selection={ratio: 0.5, seed: -1}", "data.selection.seed"),
        ("data.selection={fraction: 0.5}", "data.selection"),
        ("data.selection=0.5", "data.selection"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            validate(compose_config([override]))
    validate(compose_config(["data.selection={ratio: 0.5, seed: 0}"]))


@pytest.mark.slow
def test_cache_key_is_unchanged_and_shipped_validation_is_split():
    """adult ships no valid file (10% of adult.data); in memory and streamed, the same cut."""
    from widedeep.training.datamodule import WideDeepDataModule

    base = dict(compose_config(["data=adult"]).data)
    chosen = {**base, "selection": {"ratio": 0.5, "seed": 0}}
    reader = _reader(base)
    assert (
        cache.fingerprint(base, data_root(base), reader)[0]
        == (cache.fingerprint(chosen, data_root(chosen), reader)[0])
    )
    plain = load_data(base)
    memory = WideDeepDataModule(chosen, loader="memory")
    stream = WideDeepDataModule(chosen, loader="stream")
    memory.setup(), stream.setup()
    assert memory.data.info["cache_hit"] and stream.data.info["cache_hit"]  # one entry for all
    for dm in (memory, stream):
        valid, valid_b = dm.data.splits["valid"], dm.data.splits["valid_b"]
        assert len(valid) + len(valid_b) == len(plain.splits["valid"])
        assert abs(len(valid) - len(valid_b)) <= 2
        assert torch.equal(dm.data.splits["test"].categorical, plain.splits["test"].categorical)
    assert torch.equal(memory.data.splits["train"].categorical, plain.splits["train"].categorical)
    for split in ("valid", "valid_b"):
        assert torch.equal(memory.data.splits[split].dense, stream.data.splits[split].dense)


def test_train_with_selection_predicts_every_split_and_monitors_a_only(tmp_path):
    cfg = compose_config(
        [*TINY, "model=wide_deep", "data.selection={ratio: 0.4, seed: 1}"], str(tmp_path)
    )
    metrics = train(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    rows = saved["selection"]["rows"]
    assert saved["selection"]["ratio"] == 0.4 and saved["selection"]["seed"] == 1
    assert rows["valid"] + rows["valid_b"] == 300 and saved["rows"]["valid_b"] == rows["valid_b"]
    preds = pl.read_parquet(tmp_path / "predictions.parquet")
    assert preds.columns == ["row_id", "label", "wide_logit", "deep_logit", "logit", "split"]
    counts = dict(preds.group_by("split").len().iter_rows())
    assert counts == {"valid": rows["valid"], "valid_b": rows["valid_b"], "test": 300}
    for split, n in counts.items():
        assert preds.filter(pl.col("split") == split)["row_id"].to_list() == list(range(n))
    a = preds.filter(pl.col("split") == "valid")
    both = preds.filter(pl.col("split") != "test")
    # val/auc (early stopping, the best checkpoint) is part A's alone, not A + B's.
    assert saved["val"]["auc"] == pytest.approx(split_scores(a)["auc"], abs=1e-6)
    assert saved["val"]["auc"] != pytest.approx(split_scores(both)["auc"], abs=1e-6)
    assert saved["val"]["logloss"] == pytest.approx(split_scores(a)["logloss"], abs=1e-5)
    b = preds.filter(pl.col("split") == "valid_b")
    assert saved["val_b"] == pytest.approx(split_scores(b))
    from widedeep.training.checkpoint import load_checkpoint

    best = load_checkpoint(tmp_path / "checkpoints/best.ckpt", "resume")
    scores = [
        float(v["best_model_score"])
        for k, v in best["callbacks"].items()
        if k.startswith("ModelCheckpoint")
    ]
    assert scores == [pytest.approx(saved["val"]["auc"], abs=1e-6)]
    assert metrics["selection"] == saved["selection"]
