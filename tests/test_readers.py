"""Dataset readers: tiny hand-written fixtures for every format and every kind of bad input, then
end-to-end checks on the real public files when $WIDEDEEP_DATA_DIR has them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import ML_GENRES, real_data
from omegaconf import OmegaConf

from widedeep.core.schema import OOV_ID, PADDING_ID
from widedeep.data.pipeline import load_data
from widedeep.data.preprocess import FeatureSpec, Preprocessor
from widedeep.data.readers import READERS
from widedeep.data.readers._rows import BadInputError, _read_lines, collect_bad_rows

CONF = Path(__file__).resolve().parents[1] / "widedeep" / "conf" / "data"


def config(name: str, root: Path | str, **overrides: Any) -> dict[str, Any]:
    """The shipped ``conf/data/<name>.yaml`` as a plain dict, with ``root`` set."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    return {**cfg, "root": str(root), **overrides}


def _tab(*fields: str) -> str:
    return "\t".join(fields)


# Criteo: label, I1..I13, C1..C26. Row 2 has an empty and a negative integer and an empty C2.
_CATS = [f"{k:08x}" for k in range(0xA0, 0xA0 + 24)]
CRITEO = (
    "\n".join(
        [
            _tab(
                "0",
                "1",
                "1",
                "5",
                "0",
                "1382",
                "4",
                "15",
                "2",
                "181",
                "1",
                "2",
                "",
                "2",
                "68fd1e64",
                "80e26c9b",
                *_CATS,
            ),
            _tab(
                "1",
                "",
                "-1",
                "44",
                "1",
                "102",
                "8",
                "2",
                "2",
                "4",
                "1",
                "1",
                "",
                "4",
                "68fd1e64",
                "",
                *_CATS,
            ),
            _tab(
                "0",
                "2",
                "0",
                "1",
                "14",
                "767",
                "89",
                "4",
                "2",
                "245",
                "1",
                "3",
                "3",
                "45",
                "287e684f",
                "0a519c5c",
                *_CATS,
            ),
            _tab(
                "1",
                "",
                "893",
                "",
                "",
                "4392",
                "",
                "0",
                "0",
                "0",
                "",
                "0",
                "",
                "",
                "68fd1e64",
                "2c16a946",
                *_CATS,
            ),
        ]
    )
    + "\n"
)

AVAZU_HEADER = (
    "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,"
    "app_category,device_id,device_ip,device_model,device_type,device_conn_type,"
    "C14,C15,C16,C17,C18,C19,C20,C21"
)
AVAZU = (
    "\n".join(
        [
            AVAZU_HEADER,
            "10000174058809263569,0,14102100,1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,"
            "07d7df22,a99f214a,ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79",
            "10000720757801103869,1,14102123,1005,1,fe8cc448,9166c161,0569f928,ecad2386,7801e8d9,"
            "07d7df22,a99f214a,05241af0,8a4875bd,1,0,18993,320,50,2161,0,35,-1,157",
            "10001094637809798845,0,14102513,1002,0,84c7ba46,c4e18dd6,50e219e0,ecad2386,7801e8d9,"
            "07d7df22,0f7c61dc,a4f5f8b6,711ee120,0,0,17037,320,50,1934,2,39,-1,16",
        ]
    )
    + "\n"
)

FEATURE_MAP = (
    "index\tfield\tvalue\n0\tuser\t0\n1\tuser\t1\n2\titem\t0\n3\titem\t1\n"
    "4\tdaytime\tmorning\n5\tdaytime\tnight\n"
)
FRAPPE = {
    "frappe/x1/feature_map.tsv": FEATURE_MAP,
    # CRLF and -1 / 1 labels, as in the NFM files.
    "frappe/x1/train.libfm": "1 0:1 2:1 4:1\r\n-1 0:1 3:1 5:1\r\n1 1:1 3:1 4:1\r\n",
    # LF and 0 / 1 labels, tokens separated by a tab once.
    "frappe/x1/valid.libfm": "0 1:1 2:1\t5:1\n1 0:1 2:1 4:1\n",
    "frappe/x1/test.libfm": "1 1:1 3:1 5:1\n",
}

_ADULT_ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K",
    "52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, "
    "Female, 15024, 0, 40, ?, >50K",
    "17, ?, 304873, 10th, 6, Never-married, ?, Own-child, White, Female, 34095, 0, 32, "
    "United-States, <=50K",
    "65, Private, 209280, Masters, 14, Married-civ-spouse, Prof-specialty, Husband, White, "
    "Male, 0, 0, 35, India, >50K",
]
ADULT = {
    "adult/adult.data": "\n".join(_ADULT_ROWS) + "\n\n",
    "adult/adult.test": "|1x3 Cross validator\n" + ".\n".join(_ADULT_ROWS[:2]) + ".\n\n",
}

TEXT_FIXTURES: dict[str, dict[str, str]] = {
    "criteo": {"criteo/criteo_dac_train_first10k.txt": CRITEO},
    "avazu": {"avazu/train.csv": AVAZU},
    "frappe": FRAPPE,
    "adult": ADULT,
}
# The file each bad-input case edits.
MAIN_FILE = {
    "criteo": "criteo/criteo_dac_train_first10k.txt",
    "avazu": "avazu/train.csv",
    "frappe": "frappe/x1/train.libfm",
    "adult": "adult/adult.data",
}


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode())


def write_movielens(root: Path, ratings: pl.DataFrame | None = None) -> None:
    genres = ML_GENRES
    flags = {g: [0, 0] for g in genres}
    flags["Comedy"], flags["Drama"], flags["unknown"] = [1, 0], [1, 0], [0, 1]
    items = pl.DataFrame(
        {
            "movie_id": [1, 2],
            "movie_title": ["Toy Story (1995)", "unknown"],
            "release_date": ["01-Jan-1995", None],
            **flags,
        }
    )
    users = pl.DataFrame(
        {
            "user_id": [1, 2],
            "age": [24, 56],
            "gender": ["M", "F"],
            "occupation": ["technician", "other"],
            "zip_code": ["85711", "T8H1N"],
        }
    )
    if ratings is None:
        ratings = pl.DataFrame(
            {
                "user_id": [1, 1, 2],
                "movie_id": [1, 2, 1],
                "rating": [4, 3, 5],
                "timestamp": [881250949, 891717742, 878887116],
            }
        )
    (root / "movielens100k").mkdir(parents=True, exist_ok=True)
    for name, frame in (("data", ratings), ("items", items), ("users", users)):
        frame.write_parquet(root / "movielens100k" / f"{name}.parquet")


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


# -- fixtures: every format parses ---------------------------------------------------------------


def test_criteo_fixture(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["criteo"])
    frame = READERS["criteo"](config("criteo", tmp_path), tmp_path)
    assert frame.height == 4
    assert frame["label"].dtype == pl.Int8 and frame["label"].to_list() == [0, 1, 0, 1]
    assert frame["I1"].to_list() == [1, None, 2, None]  # empty = missing
    assert frame["I2"][1] == -1 and frame["I2"].dtype == pl.Int64
    assert frame["C2"].to_list() == ["80e26c9b", None, "0a519c5c", "2c16a946"]
    assert frame.columns == [
        *(f"I{i}" for i in range(1, 14)),
        *(f"C{i}" for i in range(1, 27)),
        "label",
    ]


def test_label_goes_under_the_configured_name(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["criteo"])
    cfg = config("criteo", tmp_path)
    cfg["features"]["label"] = "click"
    frame = READERS["criteo"](cfg, tmp_path)
    assert "click" in frame.columns and "label" not in frame.columns


def test_avazu_fixture(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["avazu"])
    frame = READERS["avazu"](config("avazu", tmp_path), tmp_path)
    assert frame["id"].to_list()[0] == "10000174058809263569"  # > 2**63: kept as a string
    assert frame["label"].to_list() == [0, 1, 0]
    assert frame["hour"].to_list() == [14102100, 14102123, 14102513]
    assert frame["hour_of_day"].to_list() == [0, 23, 13]
    assert frame["weekday"].to_list() == [2, 2, 6]  # 2014-10-21 Tuesday, 2014-10-25 Saturday
    assert frame["C20"].to_list() == ["-1", "-1", "-1"]


def test_frappe_fixture(tmp_path: Path) -> None:
    write(tmp_path, FRAPPE)
    splits = READERS["frappe"](config("frappe", tmp_path), tmp_path)
    assert {s: f.height for s, f in splits.items()} == {"train": 3, "valid": 2, "test": 1}
    train = splits["train"]
    assert train.columns == ["user", "item", "daytime", "label"]
    assert train.rows() == [
        ("0", "0", "morning", 1),
        ("0", "1", "night", 0),
        ("1", "1", "morning", 1),
    ]
    assert splits["valid"]["label"].to_list() == [0, 1]


def test_movielens_fixture(tmp_path: Path) -> None:
    write_movielens(tmp_path)
    frame = READERS["movielens"](config("movielens", tmp_path), tmp_path)
    assert frame["label"].to_list() == [1, 0, 1]
    assert "rating" not in frame.columns and "timestamp" in frame.columns
    assert frame["genres"].to_list() == [["Comedy", "Drama"], ["unknown"], ["Comedy", "Drama"]]
    assert frame["first_genre"].to_list() == ["Comedy", "unknown", "Comedy"]
    assert frame["release_year"].to_list() == [1995, None, 1995]
    assert frame["age_bucket"].to_list() == ["18-24", "18-24", "56+"]
    assert frame["zip_prefix"].to_list() == ["8", "8", "T"]


def test_adult_fixture(tmp_path: Path) -> None:
    write(tmp_path, ADULT)
    cfg = config("adult", tmp_path, split={"valid_ratio": 0.25, "seed": 0})
    splits = READERS["adult"](cfg, tmp_path)
    assert {s: f.height for s, f in splits.items()} == {"train": 3, "valid": 1, "test": 2}
    train = pl.concat([splits["train"], splits["valid"]]).sort("fnlwgt")
    assert train["age_bucket"].to_list() == ["35-39", "65+", "50-54", "<18"]
    assert train["native_country"].to_list() == ["United-States", "India", None, "United-States"]
    assert train["workclass"][3] is None and train["label"].to_list() == [0, 1, 1, 0]
    assert splits["test"]["label"].to_list() == [0, 1]  # labels with a trailing dot


def test_line_numbers_survive_chunked_reading(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_bytes(b"a\r\n\nlonger than a chunk\nc\nd")
    expected = [(1, "a"), (2, ""), (3, "longer than a chunk"), (4, "c"), (5, "d")]
    assert _read_lines(path, chunk_bytes=4).rows() == expected
    assert _read_lines(path).rows() == expected


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["criteo", "avazu", "frappe", "movielens", "adult"])
def test_missing_file_names_the_path(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileNotFoundError, match="WIDEDEEP_DATA_DIR") as err:
        READERS[name](config(name, tmp_path), tmp_path)
    assert str(tmp_path.resolve()) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("criteo", ""),
        ("avazu", AVAZU_HEADER + "\n"),
        ("frappe", "\r\n"),
        ("adult", "|1x3 Cross validator\n\n"),
    ],
)
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    write(tmp_path, {**TEXT_FIXTURES[name], MAIN_FILE[name]: content})
    with pytest.raises(BadInputError, match="empty") as err:
        READERS[name](config(name, tmp_path), tmp_path)
    assert str(tmp_path / MAIN_FILE[name]) in str(err.value)


def test_empty_parquet_file(tmp_path: Path) -> None:
    write_movielens(tmp_path)
    (tmp_path / "movielens100k" / "data.parquet").write_bytes(b"")
    with pytest.raises(BadInputError, match="data.parquet: cannot be read as Parquet"):
        READERS["movielens"](config("movielens", tmp_path), tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    lines = CRITEO.encode().split(b"\n")
    lines[2] = lines[2].replace(b"287e684f", b"287e\xff84", 1)
    write(tmp_path, {MAIN_FILE["criteo"]: b"\n".join(lines)})
    with pytest.raises(BadInputError, match=r"first10k.txt, line 3: not UTF-8"):
        READERS["criteo"](config("criteo", tmp_path), tmp_path)


def test_wrong_header(tmp_path: Path) -> None:
    write(tmp_path, {"avazu/train.csv": AVAZU.replace("click", "clicked", 1)})
    with pytest.raises(BadInputError, match=r"train.csv, line 1: header"):
        READERS["avazu"](config("avazu", tmp_path), tmp_path)


_EXTRA = CRITEO.split("\n")[2] + "\t"
# (dataset, line edited in its main file, new content, expected message)
BAD_ROWS = {
    "criteo-fields": ("criteo", 3, _EXTRA, "41 fields, expected 40"),
    # A short line: polars' fast reader would fill the missing fields with nulls.
    "criteo-short": (
        "criteo",
        2,
        CRITEO.split("\n")[1].rsplit("\t", 1)[0],
        "39 fields, expected 40",
    ),
    "criteo-integer": (
        "criteo",
        2,
        CRITEO.split("\n")[1].replace("\t44\t", "\tabc\t"),
        "field I3 is not an integer: 'abc'",
    ),
    "criteo-label": ("criteo", 4, "2" + CRITEO.split("\n")[3][1:], "label '2' is not one of"),
    "avazu-fields": ("avazu", 3, AVAZU.split("\n")[2] + ",x", "25 fields, expected 24"),
    "avazu-hour": (
        "avazu",
        2,
        AVAZU.split("\n")[1].replace("14102100", "1410210x"),
        "hour '1410210x' is not YYMMDDHH",
    ),
    "avazu-label": (
        "avazu",
        4,
        AVAZU.split("\n")[3].replace(",0,", ",yes,", 1),
        "label 'yes' is not one of",
    ),
    "frappe-fields": ("frappe", 2, "-1 0:1 3:1\r", "3 fields, expected 4"),
    # Line 1 of a file without a header: nothing of it is shown (it may be any file).
    "frappe-integer": ("frappe", 1, "1 a:1 2:1 4:1\r", "line 1: token for user is not index:1"),
    "frappe-index": ("frappe", 3, "1 1:1 4:1 4:1\r", "index 4 is not a value of field item"),
    "frappe-label": ("frappe", 2, "2 0:1 3:1 5:1\r", "label '2' is not one of"),
    "adult-fields": ("adult", 2, _ADULT_ROWS[1].rsplit(",", 1)[0], "14 fields, expected 15"),
    "adult-integer": (
        "adult",
        3,
        _ADULT_ROWS[2].replace("17,", "x,", 1),
        "field age is not an integer: 'x'",
    ),
    "adult-label": ("adult", 1, _ADULT_ROWS[0].replace("<=50K", "50K"), "line 1: label is not"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_row_is_an_error_naming_file_and_line(tmp_path: Path, case: str) -> None:
    name, line, new, message = BAD_ROWS[case]
    rel = MAIN_FILE[name]
    fixture = TEXT_FIXTURES[name]
    write(tmp_path, {**fixture, rel: replace_line(fixture[rel], line, new)})
    with pytest.raises(BadInputError) as err:
        READERS[name](config(name, tmp_path), tmp_path)
    assert f"{tmp_path / rel}, line {line}: " in str(err.value)
    assert message in str(err.value) and "on_bad_rows=skip" in str(err.value)
    assert err.value.line == line


def main_file_rows(name: str, out: pl.DataFrame | dict[str, pl.DataFrame]) -> int:
    """Rows read from `MAIN_FILE[name]` (adult.data becomes train and valid)."""
    if isinstance(out, pl.DataFrame):
        return out.height
    return out["train"].height + (out["valid"].height if name == "adult" else 0)


@pytest.mark.parametrize("case", ["criteo-fields", "avazu-hour", "frappe-index", "adult-label"])
def test_bad_row_skipped_and_counted(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    name, line, new, _ = BAD_ROWS[case]
    rel = MAIN_FILE[name]
    fixture = TEXT_FIXTURES[name]
    write(tmp_path, fixture)
    good = main_file_rows(name, READERS[name](config(name, tmp_path), tmp_path))
    write(tmp_path, {rel: replace_line(fixture[rel], line, new)})
    with caplog.at_level(logging.WARNING, "widedeep"), collect_bad_rows() as counts:
        out = READERS[name](config(name, tmp_path, on_bad_rows="skip"), tmp_path)
    assert main_file_rows(name, out) == good - 1
    assert counts[str(tmp_path / rel)] == 1
    assert f"first at line {line}" in caplog.text


def test_every_row_skipped_is_an_error(tmp_path: Path) -> None:
    bad_labels = "".join("2" + row[1:] + "\n" for row in CRITEO.splitlines())
    write(tmp_path, {MAIN_FILE["criteo"]: bad_labels})
    with pytest.raises(BadInputError, match=r"no valid rows \(4 bad rows skipped\)"):
        READERS["criteo"](config("criteo", tmp_path, on_bad_rows="skip"), tmp_path)


def test_bad_parquet_row(tmp_path: Path) -> None:
    ratings = pl.DataFrame(
        {"user_id": [1, 2, 1], "movie_id": [1, 1, 2], "rating": [4, 7, 1], "timestamp": [1, 2, 3]}
    )
    write_movielens(tmp_path, ratings)
    with pytest.raises(BadInputError, match=r"data.parquet, row 2: rating 7 is not in 1..5"):
        READERS["movielens"](config("movielens", tmp_path), tmp_path)
    with collect_bad_rows() as counts:
        frame = READERS["movielens"](config("movielens", tmp_path, on_bad_rows="skip"), tmp_path)
    assert frame["movie_id"].to_list() == [1, 2]
    assert counts == {str(tmp_path / "movielens100k" / "data.parquet"): 1}


def test_repeated_side_table_id(tmp_path: Path) -> None:
    write_movielens(tmp_path)
    users = tmp_path / "movielens100k" / "users.parquet"
    frame = pl.read_parquet(users)
    pl.concat([frame, frame.tail(1)]).write_parquet(users)
    with pytest.raises(BadInputError, match=r"users.parquet, row 3: user_id listed twice"):
        READERS["movielens"](config("movielens", tmp_path), tmp_path)


def test_unknown_bad_rows_policy(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["criteo"])
    with pytest.raises(ValueError, match="on_bad_rows"):
        READERS["criteo"](config("criteo", tmp_path, on_bad_rows="ignore"), tmp_path)


def test_unseen_category_maps_to_oov(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["criteo"])
    frame = READERS["criteo"](config("criteo", tmp_path), tmp_path)
    spec = FeatureSpec(categorical=("C1", "C2"), dense=("I1", "I2"))
    pre = Preprocessor(spec).fit(frame)
    new = frame.head(3).with_columns(pl.Series("C1", ["68fd1e64", "deadbeef", None]))
    ids = pre.transform(new)
    assert ids["C1"][0] >= 2 and ids["C1"][1] == OOV_ID and ids["C1"][2] == PADDING_ID
    assert ids["C2"][1] == PADDING_ID  # the empty C2 of the fixture's second row


# -- the real files ------------------------------------------------------------------------------


def test_real_criteo_first_row() -> None:
    root = real_data("criteo/criteo_dac_train_first10k.txt")
    frame = READERS["criteo"](config("criteo", root), root)
    first = frame.row(0, named=True)
    assert [first[f"I{i}"] for i in range(1, 14)] == [
        1,
        1,
        5,
        0,
        1382,
        4,
        15,
        2,
        181,
        1,
        2,
        None,
        2,
    ]
    assert (first["C1"], first["C2"], first["label"]) == ("68fd1e64", "80e26c9b", 0)


# name -> (files, rows per split, positives per split); "train+valid" sums the two.
REAL = {
    "criteo": (
        ["criteo/criteo_dac_train_first10k.txt"],
        {"train": 7000, "valid": 2000, "test": 1000},
        {"all": 2182},
    ),
    "movielens": (
        [
            "movielens100k/data.parquet",
            "movielens100k/items.parquet",
            "movielens100k/users.parquet",
        ],
        {"train": 80000, "valid": 10000, "test": 10000},
        {"all": 55375},
    ),
    "adult": (
        ["adult/adult.data", "adult/adult.test"],
        {"train": 29305, "valid": 3256, "test": 16281},
        {"train+valid": 7841, "test": 3846},
    ),
    "frappe": (
        [
            "frappe/x1/train.libfm",
            "frappe/x1/valid.libfm",
            "frappe/x1/test.libfm",
            "frappe/x1/feature_map.tsv",
        ],
        {"train": 202027, "valid": 57722, "test": 28860},
        {"train": 67604, "valid": 19063, "test": 9536},
    ),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "frappe" else n for n in REAL]
)
def test_real_dataset_end_to_end(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, rows, positives = REAL[name]
    root = real_data(*files)
    # Never write a cache beside the shared (read-only, not ours) data files.
    monkeypatch.setenv("WIDEDEEP_CACHE_DIR", str(tmp_path))
    data = load_data(config(name, root, cache=False))
    assert data.info["rows"] == rows
    pos = {s: int(d.label.sum()) for s, d in data.splits.items()}
    pos["all"] = sum(pos.values())
    pos["train+valid"] = pos["train"] + pos["valid"]
    assert {k: pos[k] for k in positives} == positives


# -- unlabeled input: accepted only when serving (labels="optional") ----------------------------


def _unlabeled_line(name: str, line: str) -> str:
    """A fixture line without its label field (header and comment lines likewise)."""
    if not line.strip() or line.startswith("|"):
        return line
    if name == "avazu":  # id,click,hour,...
        first, _, rest = line.split(",", 2)
        return f"{first},{rest}"
    if name == "adult":
        return line.rsplit(",", 1)[0]
    return line.split("\t" if name == "criteo" else " ", 1)[1]  # criteo, frappe: the first


def unlabeled(name: str, text: str) -> str:
    return "\n".join(_unlabeled_line(name, line) for line in text.split("\n"))


# The file read as serving input, per format (adult: the test file, with "|1x3" and dots).
SERVED = {**MAIN_FILE, "adult": "adult/adult.test", "movielens": "movielens100k/data.parquet"}


def write_served(root: Path, name: str, labels: bool) -> Path:
    """The fixture of ``name``; returns its served file, with or without the label column."""
    path = root / SERVED[name]
    if name == "movielens":
        write_movielens(root)
        if not labels:
            pl.read_parquet(path).drop("rating").write_parquet(path)
        return path
    fixture = TEXT_FIXTURES[name]
    text = fixture[SERVED[name]]
    write(root, {**fixture, SERVED[name]: text if labels else unlabeled(name, text)})
    return path


@pytest.mark.parametrize("name", ["criteo", "avazu", "frappe", "adult", "movielens"])
def test_unlabeled_file_reads_like_the_labelled_one_when_serving(tmp_path: Path, name: str) -> None:
    from widedeep.data.raw import read_raw

    with_labels = read_raw(config(name, tmp_path / "l"), write_served(tmp_path / "l", name, True))
    got = read_raw(config(name, tmp_path / "u"), write_served(tmp_path / "u", name, False))
    assert "label" in with_labels.columns and got.height > 0
    assert got.equals(with_labels.drop("label"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("criteo", "line 1: 39 fields, expected 40"),
        ("avazu", "line 1: header"),
        ("frappe", "line 1: 3 fields, expected 4"),
        ("adult", "line 1: 14 fields, expected 15"),
        ("movielens", "missing columns ['rating']"),
    ],
)
def test_unlabeled_file_is_an_error_for_training(tmp_path: Path, name: str, message: str) -> None:
    path = write_served(tmp_path, name, False)
    if name == "adult":  # training reads adult.data first
        path = tmp_path / MAIN_FILE["adult"]
        path.write_text(unlabeled("adult", ADULT[MAIN_FILE["adult"]]))
    with pytest.raises(BadInputError) as err:
        READERS[name](config(name, tmp_path), tmp_path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unlabeled_mix_is_a_bad_row(tmp_path: Path) -> None:
    from widedeep.data.readers.adult import read_adult_file

    text = unlabeled("adult", ADULT["adult/adult.data"])
    text = replace_line(text, 3, _ADULT_ROWS[2])  # line 3 keeps its income
    write(tmp_path, {"adult.data": text})
    with pytest.raises(BadInputError, match=r"adult.data, line 3: 15 fields, but line 1 has 14"):
        read_adult_file(tmp_path / "adult.data", "error", "label", labels="optional")
    with collect_bad_rows() as counts:
        frame = read_adult_file(tmp_path / "adult.data", "skip", "label", labels="optional")
    assert frame.height == 3 and "label" not in frame.columns
    assert counts == {str(tmp_path / "adult.data"): 1}


def test_unknown_labels_mode(tmp_path: Path) -> None:
    write(tmp_path, TEXT_FIXTURES["criteo"])
    with pytest.raises(ValueError, match="labels must be one of"):
        READERS["criteo"](config("criteo", tmp_path), tmp_path, labels="maybe")




@pytest.mark.slow
def test_real_movielens_genre_bags_equal_a_plain_python_gather(tmp_path, monkeypatch) -> None:
    """Every training batch's genre bags (CSR tensors gathered by the loader) against the
    genres read by hand from items.parquet's 0/1 flags, through the movie id of each row."""
    from widedeep import BatchLoader

    files = [f"movielens100k/{t}.parquet" for t in ("data", "items", "users")]
    root = real_data(*files)
    monkeypatch.setenv("WIDEDEEP_CACHE_DIR", str(tmp_path))
    data = load_data(config("movielens", root, cache=False))
    items = pl.read_parquet(root / "movielens100k/items.parquet")
    flags = {row["movie_id"]: [g for g in ML_GENRES if row[g] == 1] for row in items.to_dicts()}
    vocabs = data.preprocessor.vocabs
    movie_of = dict(enumerate(vocabs["movie_id"].table["value"].to_list(), start=2))
    genre_id = {g: i for i, g in enumerate(vocabs["genres"].table["value"].to_list(), start=2)}
    movie_col = [f.name for f in data.schema.categorical].index("movie_id")
    split = data.splits["train"]
    checked = 0
    for k, batch in enumerate(BatchLoader(split, 4096, shuffle=True, seed=1)):
        if k == 5:  # 20,480 shuffled rows: every movie's bag comes up many times
            break
        values, offsets = batch.bags[0]
        ends = [*offsets[1:].tolist(), len(values)]
        for r, movie in enumerate(batch.categorical[:, movie_col].tolist()):
            want = [genre_id[g] for g in flags[movie_of[movie]]]
            assert values[offsets[r] : ends[r]].tolist() == want, (movie_of[movie], want)
            checked += 1
    assert checked == 5 * 4096
    assert len(set(map(tuple, (flags[m] for m in flags)))) > 100  # many distinct bags
