"""``data=table``: a user's own files (CSV/TSV, Parquet, NDJSON; globs, lists, given splits)
with declared columns, through the same pipeline, cache and bad-row policy as the public
datasets; and the Criteo reader on the comma-separated DeepCTR layout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from conftest import real_data
from omegaconf import OmegaConf

from widedeep.data.pipeline import load_data, read_split
from widedeep.data.readers import MODULES, READERS
from widedeep.data.readers._rows import BadInputError, collect_bad_rows

CONF = Path(__file__).resolve().parents[1] / "widedeep" / "conf" / "data"
README = Path(__file__).resolve().parents[1] / "README.md"


def ratings(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """The README's ratings table: user, item, price, tags (a ``|``-separated bag), rating 1-5
    and time; users 0-9 like even items, the others odd ones (a pattern a model can learn)."""
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 20, n), rng.integers(0, 15, n)
    likes = (user < 10) == (item % 2 == 0)
    good = rng.random(n) < np.where(likes, 0.85, 0.15)
    tags = [
        "|".join(rng.choice(["new", "sale", "gift"], rng.integers(0, 3), replace=False))
        for _ in range(n)
    ]
    return pl.DataFrame(
        {
            "user": [f"u{u}" for u in user],
            "item": [f"i{i}" for i in item],
            "price": rng.gamma(2.0, 5.0, n).round(2),
            "tags": tags,
            "rating": np.where(good, rng.integers(4, 6, n), rng.integers(1, 4, n)),
            "time": 1_700_000_000 + np.arange(n) * 60,
        }
    )


def config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """The shipped table.yaml with the README's columns, files under ``tmp_path``."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "table.yaml"))
    cfg["root"] = str(tmp_path)
    cfg["label"] |= {"column": "rating", "threshold": 4}
    cfg["features"] |= {
        "categorical": ["user", "item"],
        "dense": ["price"],
        "bags": ["tags"],
        "crosses": [["user", "item"]],
    }
    return {**cfg, **overrides}


def test_the_table_reader_is_registered_with_its_own_module():
    assert READERS["table"].__module__ == f"widedeep.data.readers.{MODULES['table']}"


def test_a_csv_becomes_the_declared_columns_with_the_label_threshold(tmp_path):
    frame = ratings()
    frame.with_columns(extra=pl.lit("x")).write_csv(tmp_path / "r.csv")
    out = READERS["table"](config(tmp_path, files=["r.csv"]), tmp_path)
    assert sorted(out.columns) == ["item", "label", "price", "tags", "user"]  # no extra, rating
    assert out["label"].to_list() == (frame["rating"] >= 4).cast(pl.Int8).to_list()
    assert out["tags"].dtype == pl.List(pl.String)
    assert out["tags"].to_list()[:5] == [[t for t in s.split("|") if t] for s in frame["tags"][:5]]
    assert out["price"].to_list() == frame["price"].to_list()


def test_csv_parquet_ndjson_and_headerless_tsv_read_the_same(tmp_path):
    frame = ratings(50)
    frame.write_csv(tmp_path / "r.csv")
    frame.write_parquet(tmp_path / "r.parquet")
    frame.write_ndjson(tmp_path / "r.ndjson")
    frame.write_csv(tmp_path / "r.tsv", separator="\t", include_header=False)
    read = READERS["table"]
    base = read(config(tmp_path, files="r.csv"), tmp_path)
    for name, extra in [
        ("r.parquet", {}),
        ("r.ndjson", {}),
        ("r.tsv", {"header": False, "columns": frame.columns}),
    ]:
        other = read(config(tmp_path, files=[name], **extra), tmp_path)
        assert other.equals(base), name


def test_a_glob_and_a_list_of_files_are_one_table_and_key_the_cache(tmp_path):
    frame = ratings(300)
    (tmp_path / "parts").mkdir()
    for k, part in enumerate(frame.iter_slices(100)):
        part.write_csv(tmp_path / "parts" / f"{k}.csv")
    by_glob = READERS["table"](config(tmp_path, files="parts/*.csv"), tmp_path)
    listed = [f"parts/{k}.csv" for k in range(3)]
    assert by_glob.equals(READERS["table"](config(tmp_path, files=listed), tmp_path))
    assert by_glob.height == 300
    cfg = config(tmp_path, files="parts/*.csv")
    first, second = load_data(cfg), load_data(cfg)
    assert not first.info["cache_hit"] and second.info["cache_hit"]
    frame.head(50).write_csv(tmp_path / "parts" / "3.csv")  # a new file matches the glob
    third = load_data(cfg)
    assert not third.info["cache_hit"] and sum(third.info["rows"].values()) == 350


def test_label_positive_values_and_a_binary_label(tmp_path):
    frame = ratings(40).with_columns(
        kind=pl.when(pl.col("rating") == 5)
        .then(pl.lit("buy"))
        .when(pl.col("rating") == 4)
        .then(pl.lit("click"))
        .otherwise(pl.lit("view")),
        clicked=(pl.col("rating") >= 4),
    )
    frame.write_parquet(tmp_path / "r.parquet")
    read = READERS["table"]
    cfg = config(tmp_path, files=["r.parquet"])
    cfg["label"] = {"column": "kind", "positive": ["click", "buy"], "threshold": None}
    expected = (frame["rating"] >= 4).cast(pl.Int8).to_list()
    assert read(cfg, tmp_path)["label"].to_list() == expected
    cfg["label"] = {"column": "clicked", "positive": None, "threshold": None}
    assert read(cfg, tmp_path)["label"].to_list() == expected
    cfg["label"] = {"column": "rating", "positive": None, "threshold": None}
    with pytest.raises(BadInputError, match=r"r.parquet, row \d+: label '[2-5]' is not 0/1"):
        read(cfg, tmp_path)


def test_a_time_split_orders_by_the_time_column_as_numbers(tmp_path):
    # Times as text of different widths: 98 must come before 105 (a string sort would not).
    frame = ratings(100).with_columns(time=pl.Series(np.arange(100)[::-1] * 7))
    frame.write_csv(tmp_path / "r.csv")
    cfg = config(tmp_path, files=["r.csv"])
    cfg["split"] |= {"method": "time", "column": "time"}
    rows, _ = read_split(cfg)
    train = rows.filter(pl.col("__split") == 0)["time"]
    test = rows.filter(pl.col("__split") == 2)["time"]
    assert train.max() < test.min()
    assert sorted(test.to_list()) == [7 * t for t in range(90, 100)]


def test_given_split_files(tmp_path):
    frame = ratings(300)
    frame.head(200).write_csv(tmp_path / "train.csv")
    frame.slice(200, 50).write_csv(tmp_path / "valid.csv")
    frame.tail(50).write_csv(tmp_path / "test.csv")
    files = {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    data = load_data(config(tmp_path, files=files))
    assert data.info["rows"] == {"train": 200, "valid": 50, "test": 50}
    carved = load_data(config(tmp_path, files={"train": "train.csv", "test": "test.csv"}))
    assert carved.info["rows"] == {"train": 180, "valid": 20, "test": 50}


def test_bad_rows_name_file_and_line_or_are_skipped_and_counted(tmp_path):
    text = ratings(5).write_csv()
    lines = text.splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "cheap", 1)  # price on line 4
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    cfg = config(tmp_path, files=["r.csv"])
    with pytest.raises(
        BadInputError,
        match=r"r.csv, line 4: field price is not a number: "
        r"'cheap'.*on_bad_rows=skip",
    ):
        READERS["table"](cfg, tmp_path)
    with collect_bad_rows() as bad:
        out = READERS["table"]({**cfg, "on_bad_rows": "skip"}, tmp_path)
    assert out.height == 4 and list(bad.values()) == [1]


def test_a_missing_column_or_separator_is_named(tmp_path):
    ratings(5).write_csv(tmp_path / "r.csv", separator=";")
    with pytest.raises(
        BadInputError,
        match=r"no column \['user', 'item'.*line 1 looks like a "
        r"header: 6 fields separated by ';'",
    ):
        READERS["table"](config(tmp_path, files=["r.csv"]), tmp_path)
    ratings(5).write_csv(tmp_path / "ok.csv")
    cfg = config(tmp_path, files=["ok.csv"])
    cfg["features"]["dense"] = ["cost"]
    with pytest.raises(BadInputError, match=r"no column \['cost'\]"):
        READERS["table"](cfg, tmp_path)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        READERS["table"](config(tmp_path, files="none/*.csv"), tmp_path)
    with pytest.raises(ValueError, match="needs data.files"):
        READERS["table"](config(tmp_path), tmp_path)


def test_scoring_reads_new_rows_without_the_label(tmp_path):
    from widedeep.data.raw import read_raw

    ratings(20).drop("rating").write_csv(tmp_path / "new.csv")
    cfg = config(tmp_path, files=["r.csv"])
    raw = read_raw(cfg, tmp_path / "new.csv")
    assert "label" not in raw.columns and raw.height == 20 and raw["tags"].dtype == pl.List


# -- Criteo: the DeepCTR CSV layout and what the error says when a file is neither -------------


def _criteo(root: Path, name: str) -> pl.DataFrame:
    return READERS["criteo"]({"files": {"train": name}, "on_bad_rows": "error"}, root)


def _deepctr_and_tsv(tmp_path: Path) -> tuple[str, str]:
    """Three Criteo rows as DeepCTR writes them (a header, commas, counts as ``260.0``) and as
    DAC TSV."""
    ints = [
        ["", "3", "260", "", "17668", "", "", "33", "", "", "", "0", ""],
        ["0", "-1", "19", "35", "30251", "247", "1", "35", "160", "0", "1", "", "35"],
        ["2", "0", "2", "12", "", "", "0", "", "4", "", "0", "0", ""],
    ]
    cats = [f"{k:08x}" for k in range(26)]
    cats[20] = ""
    lines = [[str(k % 2), *i, *cats] for k, i in enumerate(ints)]
    names = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
    floats = [
        [f, *(v + ".0" if v else v for v in i), *c]
        for f, *rest in lines
        for i, c in [(rest[:13], rest[13:])]
    ]
    csv = "\n".join(",".join(r) for r in [names, *floats]) + "\n"
    tsv = "\n".join("\t".join(r) for r in lines) + "\n"
    return csv, tsv


def test_criteo_reads_the_deepctr_csv_like_the_tsv(tmp_path):
    csv, tsv = _deepctr_and_tsv(tmp_path)
    (tmp_path / "sample.csv").write_text(csv)
    (tmp_path / "sample.txt").write_text(tsv)
    assert "260.0" in csv
    assert _criteo(tmp_path, "sample.csv").equals(_criteo(tmp_path, "sample.txt"))
    headerless = "".join(csv.splitlines(keepends=True)[1:])
    (tmp_path / "noheader.csv").write_text(headerless)
    assert _criteo(tmp_path, "noheader.csv").equals(_criteo(tmp_path, "sample.txt"))
    # Converted to TSV, header and 260.0 kept (the conversion that used to stop at '0.0').
    (tmp_path / "converted.tsv").write_text(csv.replace(",", "\t"))
    assert _criteo(tmp_path, "converted.tsv").equals(_criteo(tmp_path, "sample.txt"))


def test_criteo_reads_the_real_deepctr_sample():
    root = real_data("criteo/deepctr_criteo_sample.txt")
    rows = _criteo(root, "criteo/deepctr_criteo_sample.txt")
    assert rows.height == 200 and rows["I3"].dtype == pl.Int64 and rows["label"].sum() > 0


def test_criteo_rejects_a_non_integral_count(tmp_path):
    csv, _ = _deepctr_and_tsv(tmp_path)
    (tmp_path / "bad.csv").write_text(csv.replace("260.0", "260.5"))
    with pytest.raises(BadInputError, match=r"line 2: field I3 is not an integer: '260.5'"):
        _criteo(tmp_path, "bad.csv")


def test_a_file_in_another_format_says_what_it_looks_like_not_to_skip(tmp_path):
    csv, _ = _deepctr_and_tsv(tmp_path)
    (tmp_path / "semi.csv").write_text(csv.replace(",", ";"))
    with pytest.raises(BadInputError) as err:
        _criteo(tmp_path, "semi.csv")
    message = str(err.value)
    assert "on_bad_rows=skip" not in message
    assert re.search(
        r"line 1: 1 fields, expected 40 separated by '\\t'.*every line.*line 1 "
        r"looks like a header: 40 fields separated by ';'",
        message,
    ), message
    assert "label;I1" not in message  # nothing of a file in another format is shown
    # One bad line among good ones still suggests skipping it.
    (tmp_path / "one.csv").write_text(csv.replace("260.0", "x"))
    with pytest.raises(BadInputError, match="on_bad_rows=skip skips such rows"):
        _criteo(tmp_path, "one.csv")


# -- the README's worked example, run as written -------------------------------------------------


def _readme_block(title: str) -> str:
    text = README.read_text()
    section = text.split(title, 1)[1]
    return re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow
def test_the_readme_table_example_runs_as_written(tmp_path):
    ratings(2000).write_csv(tmp_path / "ratings.csv")
    ratings(30, seed=1).drop("rating").write_csv(tmp_path / "new_ratings.csv")
    block = _readme_block("## Your own data")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "WIDEDEEP_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(README.parent),
        "HOME": str(tmp_path),
    }
    assert shutil.which("widedeep-train", path=env["PATH"])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "user_x_item" in result.stdout  # widedeep-data info's field table
    scores = pl.read_csv(tmp_path / "scores.csv")
    assert scores.height == 30 and scores["score"].is_between(0, 1).all()


def test_undeclared_columns_named_line_or_text_are_no_problem(tmp_path):
    frame = ratings(20).with_columns(line=pl.lit(7), text=pl.lit("a review"))
    frame.write_parquet(tmp_path / "r.parquet")
    out = READERS["table"](config(tmp_path, files=["r.parquet"]), tmp_path)
    assert out.height == 20 and "text" not in out.columns
    cfg = config(tmp_path, files=["r.parquet"])
    cfg["features"]["categorical"] = ["user", "item", "text"]
    with pytest.raises(ValueError, match=r"columns \['text'\].*reserved"):
        READERS["table"](cfg, tmp_path)
