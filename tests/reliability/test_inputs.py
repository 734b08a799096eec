"""Input files and readers (issue 17): what a reader shows of a file in an error, a UTF-8 BOM,
NUL bytes in values, split ratios, null values in Parquet, a split left without rows, and empty
scoring input. Every error is one line naming the file (and line, row or field) and ends the
command with exit code 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from omegaconf import OmegaConf

from widedeep.cli.errors import report_user_error
from widedeep.data.checks import check_data_names
from widedeep.data.raw import read_raw
from widedeep.data.readers import READERS
from widedeep.data.readers._rows import BadInputError, collect_bad_rows
from widedeep.data.split import random_split, time_split

CONF = Path(__file__).resolve().parents[2] / "widedeep" / "conf" / "data"
BOM = "\ufeff"
# What a password file looks like: no reader's format, and nothing of it may be shown.
SECRET = "s3cr3tHashThatMustNeverBePrinted"
SHADOW = "".join(f"user{k}:$6$salt${SECRET}{k}:20228:0:99999:7:::\n" for k in range(5))
ENVIRON = "".join(f"TOKEN{k}={SECRET}{k}\x00" for k in range(5))
# Criteo: label, I1..I13, C1..C26 (the C values are 8 hex digits).
CATS = [f"{k:08x}" for k in range(0xA0, 0xA0 + 26)]


def config(name: str, root: Path, **overrides: Any) -> dict[str, Any]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    return {**cfg, "root": str(root), **overrides}


def one_line(err: BaseException, capsys: pytest.CaptureFixture, prog: str = "widedeep-x") -> str:
    """What the command line prints for ``err``: one line, exit code 2."""
    assert report_user_error(prog, err) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and out.startswith(f"{prog}: error: "), out
    return out


def criteo_line(label: str = "0", c3: str = CATS[2]) -> str:
    return "\t".join([label, *["1"] * 13, CATS[0], CATS[1], c3, *CATS[3:]])


def adult_line(income: str = "<=50K", workclass: str = "Private") -> str:
    return (f"39, {workclass}, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
            f"White, Male, 2174, 0, 40, United-States, {income}")


AVAZU_HEADER = (
    "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,"
    "app_category,device_id,device_ip,device_model,device_type,device_conn_type,"
    "C14,C15,C16,C17,C18,C19,C20,C21"
)


def avazu_line(k: int = 0, site: str = "1fbe01fe") -> str:
    return (f"1000{k},{k % 2},14102100,1005,0,{site},f3845767,28905ebd,ecad2386,7801e8d9,"
            "07d7df22,a99f214a,ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79")


FEATURE_MAP = "index\tfield\tvalue\n0\tuser\tu0\n1\tuser\tu1\n2\titem\ti0\n3\titem\ti1\n"
LIBFM = "1 0:1 2:1\n-1 1:1 3:1\n1 1:1 2:1\n"


def frappe_files(tmp_path: Path, train: str, feature_map: str = FEATURE_MAP) -> dict[str, Any]:
    (tmp_path / "fm.tsv").write_text(feature_map)
    (tmp_path / "train.libfm").write_text(train)
    for split in ("valid", "test"):
        (tmp_path / f"{split}.libfm").write_text(LIBFM)
    files = {"train": "train.libfm", "valid": "valid.libfm", "test": "test.libfm",
             "feature_map": "fm.tsv"}
    return config("frappe", tmp_path, files=files,
                  features={"categorical": ["user", "item"], "label": "label"})


def table_config(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    features = {"categorical": ["user", "item"], "dense": ["price"], "label": "label"}
    return config("table", tmp_path, files=[name], features=features, **overrides)


def read(name: str, cfg: dict[str, Any], root: Path) -> Any:
    return READERS[name](cfg, root)


# 1. File contents echoed in errors ---------------------------------------------------------

def _hostile_configs(tmp_path: Path, text: str) -> dict[str, dict[str, Any]]:
    """A config of every reader whose (first) data file is ``text``."""
    path = tmp_path / "hostile"
    path.write_text(text)
    return {
        "criteo": config("criteo", tmp_path, files={"train": str(path)}),
        "avazu": config("avazu", tmp_path, files={"train": str(path)}),
        "adult": config("adult", tmp_path, files={"train": str(path), "test": str(path)}),
        "frappe": {**frappe_files(tmp_path, LIBFM), "files": {
            "train": str(path), "valid": "valid.libfm", "test": "test.libfm",
            "feature_map": "fm.tsv"}},
        "frappe_map": {**frappe_files(tmp_path, LIBFM), "files": {
            "train": "train.libfm", "valid": "valid.libfm", "test": "test.libfm",
            "feature_map": str(path)}},
        "table": table_config(tmp_path, str(path), format="csv"),
        "table_headerless": table_config(tmp_path, str(path), format="csv", header=False,
                                         columns=["user", "item", "price", "label"]),
        "table_ndjson": table_config(tmp_path, str(path), format="ndjson"),
    }


@pytest.mark.fast_first
@pytest.mark.parametrize("content", ["shadow", "environ"])
@pytest.mark.parametrize("reader", ["criteo", "avazu", "adult", "frappe", "frappe_map", "table",
                                    "table_headerless", "table_ndjson"])
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_a_file_in_another_format_is_named_but_none_of_it_is_shown(
    tmp_path, capsys, reader, content, policy
):
    cfg = _hostile_configs(tmp_path, SHADOW if content == "shadow" else ENVIRON)[reader]
    name = "frappe" if reader.startswith("frappe") else reader.split("_")[0]
    with pytest.raises((BadInputError, ValueError)) as err:
        read(name, {**cfg, "on_bad_rows": policy}, tmp_path)
    out = one_line(err.value, capsys)
    assert "hostile" in out
    for fragment in ("s3cr3t", "user0", "TOKEN", "salt", "20228"):
        assert fragment not in out, out


def test_a_bad_line_is_shown_as_a_short_escaped_prefix(tmp_path, capsys):
    long_value = "x" * 200 + "\x1b[31m"
    lines = [criteo_line(), criteo_line(), criteo_line(label="7", c3=long_value)]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInputError) as err:
        read("criteo", config("criteo", tmp_path, files={"train": "c.txt"}), tmp_path)
    out = one_line(err.value, capsys)
    assert "c.txt, line 3" in out and "label" in out
    assert "x" * 41 not in out and "\x1b" not in out  # a prefix, escaped
    assert "..." in out


def test_a_long_bad_value_is_shown_short_and_escaped(tmp_path, capsys):
    value = "y" * 100 + "\x1b]0;title\x07"
    lines = [adult_line(), adult_line(), adult_line(income=value)]
    (tmp_path / "a.data").write_text("\n".join(lines) + "\n")
    (tmp_path / "a.test").write_text(adult_line() + "\n")
    with pytest.raises(BadInputError) as err:
        read("adult", config("adult", tmp_path, files={"train": "a.data", "test": "a.test"}),
             tmp_path)
    out = one_line(err.value, capsys)
    assert "a.data, line 3" in out
    assert "y" * 41 not in out and "\x1b" not in out and "\x07" not in out


def test_a_header_with_one_wrong_name_names_that_column(tmp_path, capsys):
    header = AVAZU_HEADER.replace("site_id", "site_idd")
    (tmp_path / "t.csv").write_text("\n".join([header, avazu_line(0), avazu_line(1)]) + "\n")
    with pytest.raises(BadInputError) as err:
        read("avazu", config("avazu", tmp_path, files={"train": "t.csv"}), tmp_path)
    out = one_line(err.value, capsys)
    assert "t.csv, line 1" in out and "'site_idd'" in out and "'site_id'" in out


def test_a_table_missing_one_column_lists_its_columns(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("user,itemm,price,label\nu,i,1.0,1\n")
    with pytest.raises(BadInputError) as err:
        read("table", table_config(tmp_path, "t.csv"), tmp_path)
    out = one_line(err.value, capsys)
    assert "'item'" in out and "'itemm'" in out


# 2. A UTF-8 BOM ----------------------------------------------------------------------------

def test_criteo_with_a_bom_and_a_bad_row_keeps_the_first_row(tmp_path):
    lines = [criteo_line("1"), criteo_line("0"), criteo_line("7")]
    (tmp_path / "c.txt").write_text(BOM + "\n".join(lines) + "\n")
    cfg = config("criteo", tmp_path, files={"train": "c.txt"}, on_bad_rows="skip")
    with collect_bad_rows() as bad:
        frame = read("criteo", cfg, tmp_path)
    assert frame["label"].to_list() == [1, 0]
    assert list(bad.values()) == [1]


def _bom_cases(tmp_path: Path) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (reader, file the BOM goes in, config)."""
    (tmp_path / "c.txt").write_text("\n".join([criteo_line("1"), criteo_line("0")]) + "\n")
    (tmp_path / "cc.csv").write_text(
        ",".join(["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]])
        + "\n" + criteo_line("1").replace("\t", ",") + "\n")
    (tmp_path / "a.data").write_text("\n".join([adult_line(), adult_line(">50K")]) + "\n")
    (tmp_path / "a.test").write_text(adult_line("<=50K.") + "\n")
    (tmp_path / "v.csv").write_text("\n".join([AVAZU_HEADER, avazu_line(0), avazu_line(1)]) + "\n")
    (tmp_path / "t.csv").write_text("user,item,price,label\nu1,i1,1.5,1\nu2,i2,2.5,0\n")
    (tmp_path / "t.ndjson").write_text(
        '{"user": "u1", "item": "i1", "price": 1.5, "label": 1}\n'
        '{"user": "u2", "item": "i2", "price": 2.5, "label": 0}\n')
    frappe = frappe_files(tmp_path, LIBFM)
    return {
        "criteo": ("criteo", "c.txt", config("criteo", tmp_path, files={"train": "c.txt"})),
        "criteo_csv": ("criteo", "cc.csv", config("criteo", tmp_path, files={"train": "cc.csv"})),
        "adult": ("adult", "a.data",
                  config("adult", tmp_path, files={"train": "a.data", "test": "a.test"})),
        "adult_test": ("adult", "a.test",
                       config("adult", tmp_path, files={"train": "a.data", "test": "a.test"})),
        "avazu": ("avazu", "v.csv", config("avazu", tmp_path, files={"train": "v.csv"})),
        "frappe": ("frappe", "train.libfm", frappe),
        "frappe_map": ("frappe", "fm.tsv", frappe),
        "table_csv": ("table", "t.csv", table_config(tmp_path, "t.csv")),
        "table_ndjson": ("table", "t.ndjson", table_config(tmp_path, "t.ndjson")),
    }


def _same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    else:
        assert a.equals(b)


@pytest.mark.fast_first
@pytest.mark.parametrize("case", ["criteo", "criteo_csv", "adult", "adult_test", "avazu",
                                  "frappe", "frappe_map", "table_csv", "table_ndjson"])
def test_a_leading_bom_is_ignored_by_every_reader(tmp_path, case):
    reader, name, cfg = _bom_cases(tmp_path)[case]
    plain = read(reader, cfg, tmp_path)
    path = tmp_path / name
    path.write_bytes(BOM.encode() + path.read_bytes())
    _same(read(reader, cfg, tmp_path), plain)


def test_scoring_input_with_a_bom_reads_as_without(tmp_path):
    frame = pl.DataFrame({"user": [1, 2], "item": [3, 4], "label": [0, 1]})
    path = tmp_path / "in.csv"
    frame.write_csv(path)
    plain = read_raw({"name": "synthetic"}, path)
    path.write_bytes(BOM.encode() + path.read_bytes())
    assert read_raw({"name": "synthetic"}, path).equals(plain)


# 3. NUL bytes in values --------------------------------------------------------------------

def _nul_cases(tmp_path: Path) -> dict[str, tuple[str, dict[str, Any], str, str]]:
    """name -> (reader, config, where, field): a NUL byte in a value on line/row 2."""
    (tmp_path / "c.txt").write_text(
        "\n".join([criteo_line(), criteo_line(c3="ab\x00cd"), criteo_line()]) + "\n")
    (tmp_path / "a.data").write_text(
        "\n".join([adult_line(), adult_line(workclass="Pri\x00vate"), adult_line()]) + "\n")
    (tmp_path / "a.test").write_text(adult_line() + "\n")
    (tmp_path / "v.csv").write_text(
        "\n".join([AVAZU_HEADER, avazu_line(0), avazu_line(1, site="1f\x00e")]) + "\n")
    (tmp_path / "t.csv").write_text("user,item,price,label\nu1,i1,1.5,1\nu\x002,i2,2.5,0\n")
    pl.DataFrame({"user": ["u1", "u\x002"], "item": ["i1", "i2"], "price": [1.5, 2.5],
                  "label": [1, 0]}).write_parquet(tmp_path / "t.parquet")
    frappe = frappe_files(tmp_path, LIBFM, feature_map=FEATURE_MAP.replace("u1", "u\x001"))
    movielens = _movielens(tmp_path, pl.DataFrame({"user_id": [1, 2], "movie_id": [10, 11],
                                                   "rating": [5, 3], "timestamp": [1, 2]}))
    users = pl.read_parquet(tmp_path / "u.parquet")
    users.with_columns(pl.Series("occupation", ["writer", "doc\x00tor"])).write_parquet(
        tmp_path / "u.parquet")
    pl.DataFrame({"user": ["u1", "u\x002"], "item": [1, 2]}).write_csv(tmp_path / "s.csv")
    return {
        "criteo": ("criteo", config("criteo", tmp_path, files={"train": "c.txt"}),
                   "c.txt, line 2", "C3"),
        "adult": ("adult", config("adult", tmp_path, files={"train": "a.data", "test": "a.test"}),
                  "a.data, line 2", "workclass"),
        "avazu": ("avazu", config("avazu", tmp_path, files={"train": "v.csv"}),
                  "v.csv, line 3", "site_id"),
        "table_csv": ("table", table_config(tmp_path, "t.csv"), "t.csv, line 3", "user"),
        "table_parquet": ("table", table_config(tmp_path, "t.parquet"), "t.parquet, row 2",
                          "user"),
        "frappe_map": ("frappe", frappe, "fm.tsv, line 3", "value"),
        "movielens_users": ("movielens", movielens, "u.parquet, row 2", "occupation"),
        "scoring_table": ("scoring", {"name": "synthetic"}, "s.csv, line 3", "user"),
    }


@pytest.mark.fast_first
@pytest.mark.parametrize("case", ["criteo", "adult", "avazu", "table_csv", "table_parquet",
                                  "frappe_map", "movielens_users", "scoring_table"])
def test_a_nul_byte_in_a_value_is_refused_naming_file_line_and_field(tmp_path, capsys, case):
    reader, cfg, where, field = _nul_cases(tmp_path)[case]
    with pytest.raises(BadInputError) as err:
        if reader == "scoring":  # widedeep-predict's input of a generated dataset's run
            read_raw(cfg, tmp_path / where.split(",")[0])
        else:
            read(reader, cfg, tmp_path)
    out = one_line(err.value, capsys)
    assert where in out and f"field {field}" in out and "NUL" in out
    assert "\x00" not in out


def test_a_row_with_a_nul_byte_is_a_bad_row_that_skip_drops(tmp_path):
    reader, cfg, _, _ = _nul_cases(tmp_path)["criteo"]
    with collect_bad_rows() as bad:
        frame = read(reader, {**cfg, "on_bad_rows": "skip"}, tmp_path)
    assert frame.height == 2 and list(bad.values()) == [1]
    assert not frame["C3"].str.contains("\x00", literal=True).any()


# 4. Split ratios ---------------------------------------------------------------------------

RATIOS_12 = {"train": 0.8, "valid": 0.2, "test": 0.2}


def test_split_ratios_that_do_not_sum_to_one_are_refused(capsys):
    frame = pl.DataFrame({"t": range(10)})
    for split in (lambda r: random_split(frame, r, 0), lambda r: time_split(frame, r, "t")):
        with pytest.raises(ValueError, match=r"sum to 1\.2") as err:
            split(RATIOS_12)
        one_line(err.value, capsys)


def test_split_ratios_are_checked_before_any_data_is_read(tmp_path, capsys):
    cfg = config("criteo", tmp_path, split={"method": "random", "ratios": RATIOS_12, "seed": 0})
    with pytest.raises(ValueError, match=r"data\.split\.ratios.*sum to 1\.2") as err:
        check_data_names(cfg)
    one_line(err.value, capsys)


def test_split_ratios_off_by_float_rounding_are_accepted():
    ratios = {"train": 0.7, "valid": 0.2, "test": 0.1}  # 0.9999999999999999
    assert sum(ratios.values()) != 1.0
    parts = random_split(pl.DataFrame({"t": range(100)}), ratios, 0)
    assert sum(p.height for p in parts.values()) == 100
    check_data_names({"name": "criteo", "split": {"method": "random", "ratios": ratios}})


# 5. A null value in a Parquet file ---------------------------------------------------------

def _movielens(tmp_path: Path, ratings: pl.DataFrame) -> dict[str, Any]:
    ratings.write_parquet(tmp_path / "r.parquet")
    pl.DataFrame({"user_id": [1, 2], "age": [25, 40], "gender": ["M", "F"],
                  "occupation": ["writer", "doctor"], "zip_code": ["12345", "T8H1N"]}
                 ).write_parquet(tmp_path / "u.parquet")
    items = {"movie_id": [10, 11], "movie_title": ["a", "b"], "release_date": ["01-Jan-1995", None]}
    items |= {g: [1, 0] for g in ("unknown", "Action", "Adventure", "Animation", "Children's",
                                   "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
                                   "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                                   "Sci-Fi", "Thriller", "War", "Western")}
    pl.DataFrame(items).write_parquet(tmp_path / "i.parquet")
    files = {"ratings": "r.parquet", "users": "u.parquet", "items": "i.parquet"}
    return config("movielens", tmp_path, files=files)


@pytest.mark.parametrize("column", ["rating", "user_id", "movie_id"])
def test_a_null_in_a_parquet_column_names_file_row_column_and_what_is_expected(
    tmp_path, capsys, column
):
    ratings = {"user_id": [1, 2, 1], "movie_id": [10, 11, 11], "rating": [5, 3, 4],
               "timestamp": [1, 2, 3]}
    ratings[column][1] = None
    cfg = _movielens(tmp_path, pl.DataFrame(ratings))
    with pytest.raises(BadInputError) as err:
        read("movielens", cfg, tmp_path)
    out = one_line(err.value, capsys)
    assert "r.parquet, row 2" in out and f"column {column!r} is null" in out
    assert "expected" in out and "row 2: None" not in out


# 6. A split left without rows --------------------------------------------------------------

def test_a_dataset_too_small_for_a_validation_split_fails_before_training(tmp_path, capsys):
    from widedeep.cli.config import compose_config
    from widedeep.training.run import train

    cfg = compose_config(["data=synthetic", "data.generator.n_rows=5", "trainer.max_epochs=1",
                          "trainer.logger=none", "trainer.progress_bar=false",
                          f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError) as err:
        train(cfg)
    out = one_line(err.value, capsys, "widedeep-train")
    assert re.search(r"split 'valid' has 0 rows \(of 5\)", out), out
    assert "data.generator.n_rows" in out and "data.split.ratios.valid" in out
    assert not (tmp_path / "run" / "checkpoints").exists()


# 7. Empty scoring input --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["parquet", "csv_header_only", "csv_empty", "text"])
def test_empty_scoring_input_is_an_error_whatever_its_format(tmp_path, capsys, kind):
    empty = pl.DataFrame(schema={"user": pl.Int64, "item": pl.Int64, "label": pl.Int8})
    if kind == "parquet":
        path, cfg = tmp_path / "in.parquet", {"name": "synthetic"}
        empty.write_parquet(path)
    elif kind == "csv_header_only":
        path, cfg = tmp_path / "in.csv", {"name": "synthetic"}
        empty.write_csv(path)
    elif kind == "csv_empty":
        path, cfg = tmp_path / "in.csv", {"name": "synthetic"}
        path.write_text("")
    else:
        path, cfg = tmp_path / "in.txt", config("criteo", tmp_path)
        path.write_text("")
    with pytest.raises(BadInputError) as err:
        read_raw(cfg, path)
    out = one_line(err.value, capsys, "widedeep-predict")
    assert "in." in out and "empty" in out


@pytest.mark.fast_first
@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="no /proc/self/environ")
@pytest.mark.parametrize("reader", ["criteo", "adult", "avazu", "table"])
def test_proc_self_environ_as_a_data_file_shows_none_of_the_environment(tmp_path, capsys, reader):
    environ = Path("/proc/self/environ")
    values = [v.split("=", 1)[-1] for v in environ.read_bytes().decode("utf-8", "replace")
              .split("\x00")]
    cfg = _hostile_configs(tmp_path, "")[reader]
    cfg = {**cfg, "files": {k: str(environ) for k in cfg["files"]} if isinstance(
        cfg["files"], dict) else [str(environ)]}
    with pytest.raises((BadInputError, ValueError)) as err:
        read(reader, cfg, tmp_path)
    out = one_line(err.value, capsys)
    assert "/proc/self/environ" in out
    assert not [v for v in values if len(v) >= 8 and v in out]
