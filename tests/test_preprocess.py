"""Preprocessing: vocabularies, dense statistics, crosses, discretization, persistence, errors."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from widedeep.data import preprocess
from widedeep.data.hashing import bucketize, bucketize_expr, hash_columns, splitmix64
from widedeep.data.preprocess import FeatureSpec, Preprocessor, discretize
from widedeep.data.vocab import Vocabulary

MASK64 = 2**64 - 1


def splitmix64_reference(x: int) -> int:
    """SplitMix64's finaliser in plain Python integers (Steele et al., 2014)."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def hash_reference(values: list[int], seed: int = 0) -> int:
    h = splitmix64_reference(seed)
    for v in values:
        h = splitmix64_reference(h ^ splitmix64_reference(v))
    return h


def encode(vocab: Vocabulary, values: list) -> list[int]:
    return pl.select(vocab.encode(pl.lit(pl.Series(values)))).to_series().to_list()


def raw_frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """Strings, ints with nulls, counts with negatives and nulls, a float and a bag."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "rome", "oslo", "lima", "nome"], n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    device = rng.integers(0, 4, n).astype(float)
    device[rng.random(n) < 0.1] = np.nan
    clicks = rng.integers(-1, 500, n).astype(float)
    clicks[rng.random(n) < 0.2] = np.nan
    tags = [list(rng.choice(["a", "b", "c"], rng.integers(0, 3))) for _ in range(n)]
    return pl.DataFrame(
        {
            "city": city,
            "device": pl.Series(device, nan_to_null=True).cast(pl.Int64),
            "clicks": pl.Series(clicks, nan_to_null=True).cast(pl.Int64),
            "price": rng.lognormal(2.0, 1.0, n),
            "tags": tags,
            "label": rng.integers(0, 2, n),
        }
    )


FEATURES = {
    "categorical": ["city", "device"],
    "discretize": ["clicks"],
    "dense": ["price"],
    "bags": ["tags"],
    "crosses": [
        {"fields": ["city", "device"], "min_count": 5},
        {"fields": ["city", "clicks"], "hashed": True, "num_buckets": 50},
    ],
    "min_count": 2,
    "dense_transform": "log1p_standardize",
}


def fitted(frame: pl.DataFrame | None = None) -> Preprocessor:
    spec = FeatureSpec.from_config(FEATURES)
    return Preprocessor(spec).fit(raw_frame() if frame is None else frame)


# -- vocabularies ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "int"])
def test_vocabulary_min_count_null_unseen_and_deterministic_ids(kind: str) -> None:
    raw = ["b", "a", "b", None, "c", "a", "b", "d", "d", None]
    cast = (lambda v: v) if kind == "str" else (lambda v: None if v is None else ord(v))
    values = [cast(v) for v in raw]
    vocab = Vocabulary.fit(pl.Series("x", values), min_count=2)
    # b (3), then a and d (2 each, tie broken by value), c (1) is rare; ids 0, 1 reserved.
    assert vocab.table["value"].to_list() == [cast("b"), cast("a"), cast("d")]
    assert len(vocab) == 5
    probe = [cast(v) for v in ["b", "a", "d", "c", None, "zz" if kind == "str" else "~"]]
    assert encode(vocab, probe) == [2, 3, 4, 1, 0, 1]
    shuffled = Vocabulary.fit(pl.Series("x", values[::-1]), min_count=2)
    assert shuffled.table.equals(vocab.table)


def test_vocabulary_rejects_min_count_below_one() -> None:
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.fit(pl.Series("x", ["a"]), min_count=0)


# -- dense statistics --------------------------------------------------------------------------


def test_dense_statistics_come_from_training_rows_only() -> None:
    train = raw_frame(300, seed=1)
    valid = raw_frame(100, seed=2).with_columns(pl.col("price") * 50 + 7)  # another distribution
    pre = fitted(train)
    x = np.log1p(np.clip(train["price"].to_numpy(), 0, None))
    mean, std = pre.dense_stats["price"]
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert std == pytest.approx(x.std(ddof=1), rel=1e-12)
    out = pre.transform(valid)["price"].to_numpy()
    expected = (np.log1p(valid["price"].to_numpy()) - mean) / std
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)
    assert abs(out.mean()) > 1.0  # valid is *not* re-standardised to mean 0


def test_missing_dense_value_becomes_zero_and_negative_counts_clip() -> None:
    spec = FeatureSpec(dense=("n",), dense_transform="log1p_standardize")
    train = pl.DataFrame({"n": [0, 1, 3, 7], "label": [0, 1, 0, 1]})
    pre = Preprocessor(spec).fit(train)
    out = pre.transform(pl.DataFrame({"n": [None, -1, 0]}))["n"].to_list()
    assert out[0] == 0.0
    assert out[1] == out[2]  # -1 clips to 0 before log1p


# -- crosses -----------------------------------------------------------------------------------


def test_exact_cross_vocabulary_min_count_and_missing_component() -> None:
    a = ["x"] * 6 + ["y"] * 6 + [None, "x"]
    b = ["p"] * 5 + ["q"] + ["p"] * 6 + ["p", None]
    train = pl.DataFrame({"a": a, "b": b})
    spec = FeatureSpec(
        categorical=("a", "b"),
        crosses=(preprocess.CrossSpec(("a", "b"), min_count=5),),
    )
    pre = Preprocessor(spec).fit(train)
    vocab = pre.vocabs["a_x_b"]
    assert vocab.table["count"].to_list() == [6, 5]  # (y, p) x6, (x, p) x5; (x, q) x1 is rare
    probe = pl.DataFrame(
        {"a": ["y", "x", "x", None, "x", "zz"], "b": ["p", "p", "q", "p", None, "p"]}
    )
    ids = pre.transform(probe)["a_x_b"].to_list()
    assert ids[:3] == [2, 3, 1]  # known, known, rare -> unseen
    assert ids[3:5] == [0, 0]  # a missing component -> missing
    assert ids[5] == 1  # unseen component value: (unseen, p) was never seen in training
    assert pre.schema.field("a_x_b").cardinality == 4


def test_splitmix64_matches_an_independent_reference() -> None:
    inputs = [0, 1, 2, 12345, 2**32 + 7, 2**63, MASK64]
    got = splitmix64(np.array(inputs, dtype=np.uint64)).tolist()
    assert got == [splitmix64_reference(v) for v in inputs]
    rows = [[3, 5], [0, 0], [2**40, 17]]
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows, strict=True)]
    assert hash_columns(cols, seed=9).tolist() == [hash_reference(r, seed=9) for r in rows]


def test_bucketize_expression_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2**40, 5000), rng.integers(0, 100, 5000)
    frame = pl.DataFrame({"a": a, "b": b})
    expr = bucketize_expr([pl.col("a"), pl.col("b")], 997, seed=3)
    want = bucketize([a, b], 997, 3)
    np.testing.assert_array_equal(frame.select(expr).to_series().to_numpy(), want)
    lazy = pl.concat(frame.lazy().select(expr).collect_batches(chunk_size=700))
    np.testing.assert_array_equal(lazy.to_series().to_numpy(), want)


def test_hashed_cross_ids_are_stable_and_in_range() -> None:
    pre = fitted()
    frame = raw_frame(300, seed=5)
    out = pre.transform(frame)
    ids = out["city_x_clicks"].to_numpy()
    missing = (out["city"] == 0) | (out["clicks"] == 0)
    assert (ids[missing.to_numpy()] == 0).all()
    known = ids[~missing.to_numpy()]
    assert known.min() >= 2 and known.max() < 50 + 2
    expected = [
        hash_reference([c, k]) % 50 + 2
        for c, k in zip(out["city"].to_list(), out["clicks"].to_list(), strict=True)
        if c and k
    ]
    assert known.tolist() == expected
    assert pre.schema.field("city_x_clicks").cardinality == 52


# -- discretization ----------------------------------------------------------------------------


def test_discretize_values() -> None:
    xs = [None, -3, -1, 0, 1, 2, 3, 10, 1000, 2.5]
    got = pl.select(discretize(pl.lit(pl.Series(xs, dtype=pl.Float64)))).to_series().to_list()
    want = [None if x is None else math.floor(math.log(x) ** 2 if x > 2 else x) for x in xs]
    assert got == want
    assert got[-3:] == [5, 47, 0]


def test_discretized_column_is_a_categorical_field() -> None:
    train = pl.DataFrame({"n": [5, 5, 5, 100, None, 1, 1], "label": [0] * 7})
    pre = Preprocessor(FeatureSpec(discretize=("n",))).fit(train)
    # floor(ln(5)^2) = 2 (x3), 1 (x2), floor(ln(100)^2) = 21 (x1); ids from 2 in that order
    assert pre.vocabs["n"].table["value"].to_list() == [2, 1, 21]
    # floor(ln(6)^2) = 3 and floor(ln(1e9)^2) = 429 were never seen: unseen (1)
    probe = pl.DataFrame({"n": [5, 1, None, 100, 6, 10**9]})
    assert pre.transform(probe)["n"].to_list() == [2, 3, 0, 4, 1, 1]
    assert pre.schema.categorical[0].name == "n" and pre.schema.dense == ()


def test_discretize_and_dense_on_one_column_is_an_error() -> None:
    message = "'clicks' is listed in both features.discretize and features.dense"
    with pytest.raises(ValueError, match=message):
        FeatureSpec.from_config({"dense": ["clicks"], "discretize": ["clicks"]})


# -- LazyFrames, batches, persistence ----------------------------------------------------------


def test_lazy_and_batched_fitting_match_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = raw_frame()
    eager = fitted(frame)
    monkeypatch.setattr(preprocess, "BATCH_ROWS", 37)  # many batches, merged as they come
    lazy = Preprocessor(eager.spec).fit(frame.lazy())
    assert lazy.schema == eager.schema
    for name, vocab in eager.vocabs.items():
        assert lazy.vocabs[name].table.equals(vocab.table), name
    assert lazy.dense_stats["price"] == pytest.approx(eager.dense_stats["price"], rel=1e-12)
    out = eager.transform(frame.lazy())
    assert isinstance(out, pl.LazyFrame)
    assert out.collect().equals(eager.transform(frame))


def test_save_load_round_trip_gives_identical_output(tmp_path) -> None:
    pre = fitted()
    pre.save(tmp_path / "pre")
    again = Preprocessor.load(tmp_path / "pre")
    frame = raw_frame(200, seed=9)
    assert again.schema == pre.schema
    assert again.transform(frame).equals(pre.transform(frame))


def test_bags_encode_each_value() -> None:
    pre = fitted()
    out = pre.transform(pl.DataFrame({**raw_frame(2).to_dict(), "tags": [["a", "zz"], []]}))
    ids = out["tags"].to_list()
    assert ids[0][1] == 1 and ids[0][0] >= 2 and ids[1] == []


# -- errors ------------------------------------------------------------------------------------


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match=r"training data: missing columns \['device'\]"):
        fitted(raw_frame().drop("device"))
    with pytest.raises(ValueError, match=r"valid: missing columns \['price'\]"):
        fitted().transform(raw_frame().drop("price").lazy(), "valid")


def test_bad_dense_transform_is_an_error() -> None:
    with pytest.raises(ValueError, match="dense_transform 'log' is not one of"):
        FeatureSpec.from_config({"dense": ["x"], "dense_transform": "log"})


def test_cross_naming_an_unknown_field_is_an_error() -> None:
    message = r"cross \['city', 'nope'\].*unknown or not single-valued: \['nope'\]"
    with pytest.raises(ValueError, match=message):
        FeatureSpec.from_config({"categorical": ["city"], "crosses": [["city", "nope"]]})


def test_transform_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before fit"):
        Preprocessor(FeatureSpec.from_config(FEATURES)).transform(raw_frame())
