"""widedeep-inspect: wide weights decoded to raw values; on planted data, the planted pairs."""

from __future__ import annotations

import json

import polars as pl
import pytest
from omegaconf import OmegaConf

from widedeep.cli.config import compose_config
from widedeep.cli.inspect import main
from widedeep.data.preprocess import FeatureSpec, Preprocessor
from widedeep.data.readers.synthetic import SyntheticConfig, generate
from widedeep.experiment.wide_weights import Decoder, inspect_wide, plot_weights
from widedeep.training.run import train

QUIET = ["trainer.progress_bar=false", "trainer.logger=none"]
# Few, strong exceptions, each replayed often enough in 24k training rows to be memorised.
PLANTED = [
    "experiment=demo",
    "data.generator.n_rows=30000",
    "data.generator.n_exceptions=100",
    "trainer.max_epochs=3",
    *QUIET,
]
TINY = ["data.generator.n_rows=6000", "trainer.max_epochs=1", "data.batch_size=512", *QUIET]


def test_exact_cross_ids_decode_to_the_raw_values_and_counts_of_their_rows():
    raw = pl.DataFrame(
        {
            "user": ["ann", "bob", "ann", "cid", "bob", "ann", "dan"],
            "item": [7, 8, 7, 7, 8, 9, 9],
            "label": [1, 0, 1, 0, 1, 0, 0],
        }
    )
    spec = FeatureSpec.from_config({"categorical": ["user", "item"], "crosses": [["user", "item"]]})
    pre = Preprocessor(spec).fit(raw)
    encoded = pre.transform(raw)
    decoder = Decoder(pre)
    pairs = raw.group_by("user", "item").len()
    for row, id in zip(raw.iter_rows(named=True), encoded["user_x_item"], strict=True):
        fields = ("user", "item")
        assert decoder.combination(fields, decoder.components("user_x_item", id)) == (
            f"AND(user={row['user']}, item={row['item']})"
        )
        seen = pairs.filter(pl.col("user") == row["user"], pl.col("item") == row["item"])["len"]
        assert decoder.seen("user_x_item", id) == seen.item()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A joint model and the wide tower alone, trained on the same planted log."""
    root = tmp_path_factory.mktemp("inspect")
    out = {}
    for kind in ("wide_deep", "wide"):
        train(compose_config([*PLANTED, f"model={kind}"], str(root / kind)))
        out[kind] = root / kind
    return out


def planted_pairs(run) -> dict[tuple[int, int], float]:
    """The generator's record of its exceptions: (user, item) -> sign of the planted effect."""
    generator = OmegaConf.to_container(OmegaConf.load(run / "config.yaml").data.generator)
    rows = generate(SyntheticConfig(**generator)).filter(pl.col("is_exception"))
    effects = rows.select("user", "item", pl.col("exception_effect").sign()).unique()
    return {(u, i): s for u, i, s in effects.iter_rows()}


@pytest.mark.slow
def test_the_joint_models_top_cross_weights_are_the_planted_exceptions(runs):
    top = 20
    report = inspect_wide(runs["wide_deep"], top=top)
    planted = planted_pairs(runs["wide_deep"])
    space = report.space("user_x_item")
    largest = sorted([*space.positive, *space.negative], key=lambda e: -abs(e.weight))[:top]
    right = 0
    for entry in largest:
        user, item = entry.label.removeprefix("AND(").removesuffix(")").split(", ")
        pair = (int(user.removeprefix("user=")), int(item.removeprefix("item=")))
        right += planted.get(pair) == (1.0 if entry.weight > 0 else -1.0)
        assert entry.seen and entry.seen >= 2  # the cross's min_count
    assert right >= 0.75 * top, f"{right} of the top {top} are planted pairs with the right sign"
    assert 0 < space.nonzero <= len(space.weights)


@pytest.mark.slow
def test_the_png_and_json_compare_the_joint_model_with_the_wide_one(runs, tmp_path, capsys):
    png = tmp_path / "weights.png"
    main([str(runs["wide_deep"]), str(runs["wide"]), "--top", "3", "--json", "--png", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reports = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in reports] == ["wide_deep", "wide"]
    for r in reports:
        assert r["spaces"][0]["group"] == "crosses"  # the crosses come first
        for s in r["spaces"]:
            assert len(s["positive"]) <= 3 and all(e["weight"] > 0 for e in s["positive"])
            assert all(e["weight"] < 0 for e in s["negative"])
    again = plot_weights([inspect_wide(runs["wide"])], tmp_path / "one.png")
    assert again.stat().st_size > 0


@pytest.mark.slow
def test_hashed_buckets_list_the_raw_pairs_that_fall_into_them(tmp_path, capsys):
    hashed = "data.features.crosses=[{fields:[device,hour],hashed:true,num_buckets:8}]"
    run = tmp_path / "hashed"
    train(compose_config([*TINY, "model=wide", hashed], str(run)))
    report = inspect_wide(run, top=3, pairs=True)
    space = report.space("device_x_hour")
    pre = Preprocessor.load(run / "preprocessor")
    for entry in (*space.positive, *space.negative):
        assert entry.pairs and sum(rows for _, rows in entry.pairs) <= entry.seen
        for label, _ in entry.pairs:
            device, hour = (int(v.split("=")[1]) for v in label[4:-1].split(", "))
            one = pl.DataFrame({"device": [device], "hour": [hour]}).with_columns(
                pl.lit(None, pl.Int64).alias(c) for c in ("user", "item", "category", "position")
            )
            one = one.with_columns(pl.lit(1.0).alias(c) for c in ("price", "activity", "noise"))
            assert pre.transform(one)["device_x_hour"].item() == entry.id  # the pair's bucket
    text = report.format()
    assert "a bucket may hold several raw combinations" in text
    assert "--pairs" in inspect_wide(run, top=3).format()  # without counts: says how to get them


def test_bad_runs_end_in_one_line_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main([str(tmp_path / "missing")])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("widedeep-inspect: error:") and "missing" in err and "\n" not in err
    deep = tmp_path / "deep"
    train(compose_config([*TINY, "model=deep"], str(deep)))
    with pytest.raises(SystemExit) as exit:
        main([str(deep)])
    assert exit.value.code == 2
    assert "has no wide tower" in capsys.readouterr().err
