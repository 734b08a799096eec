"""widedeep-predict: scores on raw rows equal the training-time predictions; unseen values map to
OOV; malformed rows and missing files end in one line naming them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import ML_GENRES, real_data

from widedeep.cli.config import compose_config
from widedeep.cli.predict import main
from widedeep.core.schema import OOV_ID
from widedeep.data.pipeline import split_assignment
from widedeep.data.raw import read_raw
from widedeep.data.readers._rows import BadInputError
from widedeep.data.readers.synthetic import SyntheticConfig, generate
from widedeep.data.split import SPLITS
from widedeep.serving.predictor import Predictor, predict_file
from widedeep.training.run import train

FAST = [
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
    "trainer.logger=none",
    "model.deep.hidden=[8]",
    "model.deep.embedding_dim=4",
    "data.batch_size=64",
]
C3 = 1 + 13 + 2  # the column of C3 in a Criteo line: label, I1..I13, C1, C2, C3


def criteo_lines(n: int, seed: int = 0) -> list[str]:
    """Criteo-format rows: label, 13 counts, 26 categories from small vocabularies, some empty."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        cats = [
            f"{j:02x}{rng.integers(0, 6):06x}" if rng.random() > 0.05 else "" for j in range(26)
        ]
        ints = [str(rng.integers(-1, 200)) if rng.random() > 0.1 else "" for _ in range(13)]
        label = int(rng.random() < (0.7 if cats[0].endswith("1") else 0.25))
        lines.append("\t".join([str(label), *ints, *cats]))
    return lines


def adult_rows(n: int, seed: int, dot: str = "") -> list[str]:
    """adult.data-format rows (``dot="."`` for adult.test's labels), with some ``?``."""
    rng = np.random.default_rng(seed)
    pick = lambda *values: values[rng.integers(0, len(values))]  # noqa: E731
    rows = []
    for _ in range(n):
        edu = pick("Bachelors", "HS-grad", "Masters", "10th")
        rich = rng.random() < (0.6 if edu in ("Bachelors", "Masters") else 0.15)
        rows.append(
            ", ".join(
                [
                    str(rng.integers(17, 80)),
                    pick("Private", "State-gov", "?"),
                    str(rng.integers(1e4, 4e5)),
                    edu,
                    str(rng.integers(6, 16)),
                    pick("Never-married", "Married-civ-spouse"),
                    pick("Adm-clerical", "Exec-managerial", "?"),
                    pick("Husband", "Wife", "Own-child"),
                    "White",
                    pick("Male", "Female"),
                    str(pick(0, 0, 2174)),
                    "0",
                    str(rng.integers(20, 60)),
                    pick("United-States", "India", "?"),
                    (">50K" if rich else "<=50K") + dot,
                ]
            )
        )
    return rows


FRAPPE_FIELDS = (
    "user",
    "item",
    "daytime",
    "weekday",
    "isweekend",
    "homework",
    "cost",
    "weather",
    "country",
    "city",
)


def write_frappe(root: Path, seed: int = 0) -> None:
    """libFM files (the NFM layout): a feature map of 3 values per field, -1/1 labels."""
    rng = np.random.default_rng(seed)
    folder = root / "frappe" / "x1"
    folder.mkdir(parents=True)
    index = {(f, v): 3 * k + v for k, f in enumerate(FRAPPE_FIELDS) for v in range(3)}
    (folder / "feature_map.tsv").write_text(
        "index\tfield\tvalue\n" + "".join(f"{i}\t{f}\t{v}\n" for (f, v), i in index.items())
    )
    for split, n in (("train", 300), ("valid", 80), ("test", 60)):
        lines = []
        for _ in range(n):
            values = rng.integers(0, 3, len(FRAPPE_FIELDS))
            label = 1 if rng.random() < (0.7 if values[0] == 1 else 0.3) else -1
            ids = [f"{index[f, int(v)]}:1" for f, v in zip(FRAPPE_FIELDS, values, strict=True)]
            lines.append(" ".join([str(label), *ids]))
        (folder / f"{split}.libfm").write_text("\n".join(lines) + "\n")


def avazu_lines(n: int, seed: int = 0) -> list[str]:
    """Avazu train.csv rows (with the header): ids, YYMMDDHH hours, small vocabularies."""
    rng = np.random.default_rng(seed)
    header = (
        "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,"
        "app_category,device_id,device_ip,device_model,device_type,device_conn_type,"
        "C14,C15,C16,C17,C18,C19,C20,C21"
    )
    lines = [header]
    for k in range(n):
        cats = [f"{j:02x}{rng.integers(0, 4):06x}" for j in range(21)]
        click = int(rng.random() < (0.6 if cats[2].endswith("1") else 0.2))
        hour = f"1410{rng.integers(21, 31):02d}{rng.integers(0, 24):02d}"
        lines.append(",".join([str(10**18 + k), str(click), hour, *cats]))
    return lines


def write_movielens(root: Path, n: int = 600, seed: int = 0) -> None:
    """The three MovieLens 100K tables: 40 users, 30 movies with genre flags, n ratings."""
    rng = np.random.default_rng(seed)
    folder = root / "movielens100k"
    folder.mkdir(parents=True)
    flags = rng.random((30, len(ML_GENRES))) < 0.2
    pl.DataFrame(
        {
            "movie_id": range(1, 31),
            "release_date": [f"01-Jan-{1950 + k}" for k in range(30)],
            **{g: flags[:, j].astype(int) for j, g in enumerate(ML_GENRES)},
        }
    ).write_parquet(folder / "items.parquet")
    pl.DataFrame(
        {
            "user_id": range(1, 41),
            "age": rng.integers(15, 70, 40),
            "gender": rng.choice(["M", "F"], 40),
            "occupation": rng.choice(["a", "b", "c"], 40),
            "zip_code": [f"{rng.integers(0, 99999):05d}" for _ in range(40)],
        }
    ).write_parquet(folder / "users.parquet")
    pl.DataFrame(
        {
            "user_id": rng.integers(1, 41, n),
            "movie_id": rng.integers(1, 31, n),
            "rating": rng.integers(1, 6, n),
            "timestamp": 880_000_000 + np.arange(n) * 60,
        }
    ).write_parquet(folder / "data.parquet")


def _train(name: str, root: Path) -> tuple[Path, Path]:
    """Train a tiny model on ``name``; return (run dir, a raw file of its test split's rows)."""
    run = root / "run"
    if name == "criteo":
        lines = criteo_lines(400)
        (root / "criteo").mkdir()
        (root / "criteo" / "tiny.txt").write_text("\n".join(lines) + "\n")
        cfg = compose_config(
            ["data=criteo", f"data.root={root}", "data.files.train=criteo/tiny.txt", *FAST],
            output_dir=str(run),
        )
        # The test split's lines, as the training run drew them.
        assign = split_assignment(pl.DataFrame({"x": range(len(lines))}), dict(cfg.data))
        test = root / "test.txt"
        test.write_text("\n".join(np.array(lines)[assign == SPLITS.index("test")]) + "\n")
    elif name == "adult":
        (root / "adult").mkdir()
        (root / "adult" / "adult.data").write_text("\n".join(adult_rows(300, 0)) + "\n\n")
        test = root / "adult" / "adult.test"  # the shipped test split is the whole file
        test.write_text("|1x3 Cross validator\n" + "\n".join(adult_rows(80, 1, ".")) + "\n\n")
        cfg = compose_config(["data=adult", f"data.root={root}", *FAST], output_dir=str(run))
    elif name == "frappe":
        write_frappe(root)
        test = root / "frappe" / "x1" / "test.libfm"  # shipped splits: the whole test file
        cfg = compose_config(["data=frappe", f"data.root={root}", *FAST], output_dir=str(run))
    elif name == "avazu":
        lines = avazu_lines(500)
        (root / "avazu").mkdir()
        (root / "avazu" / "train.csv").write_text("\n".join(lines) + "\n")
        cfg = compose_config(["data=avazu", f"data.root={root}", *FAST], output_dir=str(run))
        assign = split_assignment(pl.DataFrame({"x": range(len(lines) - 1)}), dict(cfg.data))
        test = root / "test.csv"
        rows = np.array(lines[1:])[assign == SPLITS.index("test")]
        test.write_text("\n".join([lines[0], *rows]) + "\n")
    elif name == "movielens":
        write_movielens(root)
        cfg = compose_config(["data=movielens", f"data.root={root}", *FAST], output_dir=str(run))
        ratings = pl.read_parquet(root / "movielens100k" / "data.parquet")
        test = root / "test.parquet"  # served rows: ratings (users and items joined from root)
        ratings.filter(
            split_assignment(ratings, dict(cfg.data)) == SPLITS.index("test")
        ).write_parquet(test)
    else:
        cfg = compose_config(["data.generator.n_rows=3000", *FAST], output_dir=str(run))
        raw = generate(SyntheticConfig(**cfg.data.generator))
        test = root / "test.parquet"
        raw.filter(split_assignment(raw, dict(cfg.data)) == SPLITS.index("test")).write_parquet(
            test
        )
    train(cfg)
    return run, test


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            made[name] = _train(name, tmp_path_factory.mktemp(name))
        return made[name]

    return get


def expected(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "predictions.parquet").filter(pl.col("split") == "test")


def assert_same_scores(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.height == want.height
    assert got["label"].to_list() == want["label"].to_list()
    for column in ("wide_logit", "deep_logit", "logit"):
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("criteo", ".parquet"),
        ("adult", ".csv"),
        ("synthetic", ".parquet"),
        ("frappe", ".csv"),
        ("avazu", ".parquet"),
        ("movielens", ".csv"),
    ],
)
def test_scores_on_raw_test_rows_equal_training_predictions(runs, tmp_path, name, suffix):
    run, test = runs(name)
    assert (run / "preprocessor" / "preprocessor.json").is_file()
    out = tmp_path / f"scores{suffix}"
    scores, bad = predict_file(run / "checkpoints" / "best.ckpt", test, out)
    assert bad == {}
    written = pl.read_parquet(out) if suffix == ".parquet" else pl.read_csv(out)
    assert written.columns == ["row_id", "label", "wide_logit", "deep_logit", "logit", "score"]
    assert_same_scores(written, expected(run))
    np.testing.assert_allclose(
        scores["score"], 1 / (1 + np.exp(-scores["logit"].to_numpy())), rtol=1e-6
    )


@pytest.mark.slow
def test_run_without_saved_preprocessing_falls_back_to_the_cache(runs, tmp_path):
    run, test = runs("criteo")
    old = tmp_path / "old-run"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("preprocessor"))
    scores, _ = predict_file(old, test)  # a run directory works as checkpoint= too
    assert_same_scores(scores, expected(run))


@pytest.mark.slow
def test_unseen_categories_map_to_oov(runs, tmp_path):
    run, test = runs("criteo")
    lines = test.read_text().splitlines()
    scored = []
    for k, value in enumerate(["never-seen-a", "never-seen-b"]):
        fields = [line.split("\t") for line in lines]
        for f in fields:
            f[C3] = value
        path = tmp_path / f"unseen{k}.txt"
        path.write_text("\n".join("\t".join(f) for f in fields) + "\n")
        predictor = Predictor.load(run)
        encoded = predictor.preprocessor.transform(read_raw(predictor.data_cfg, path))
        assert (encoded["C3"] == OOV_ID).all()
        scored.append(predict_file(run, path)[0])
    # Two different unseen values are the same OOV id, hence the same scores.
    np.testing.assert_array_equal(scored[0]["logit"], scored[1]["logit"])
    # And the field is read: the rows whose own C3 was known score otherwise than as OOV
    # (a predictor ignoring C3 would give every row its original score), the others the same.
    original = predict_file(run, test)[0]["logit"].to_numpy()
    own = predictor.preprocessor.transform(read_raw(predictor.data_cfg, test))["C3"].to_numpy()
    known = own != OOV_ID
    assert known.sum() > len(own) // 2
    changed = scored[0]["logit"].to_numpy() != original
    np.testing.assert_array_equal(changed, known)


@pytest.mark.slow
def test_malformed_row_is_one_line_naming_file_and_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    run, test = runs("criteo")
    lines = test.read_text().splitlines()
    fields = lines[2].split("\t")
    fields[2] = "abc"  # line 3: I2 is not a count
    lines[2] = "\t".join(fields)
    lines[4] += "\tx"  # line 5: one field too many
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main([f"checkpoint={run}", f"input={bad}", f"output={tmp_path / 'out.parquet'}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert f"{bad}, line 5: 41 fields, expected 40" in err  # field counts are checked first
    assert not (tmp_path / "out.parquet").exists()
    # on_bad_rows=skip: the other rows are scored and the skips are counted.
    scores, skipped = predict_file(run, bad, on_bad_rows="skip")
    assert scores.height == len(lines) - 2 and skipped == {str(bad): 2}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["checkpoint", "input", "output", "key"])
def test_bad_arguments_are_one_line(runs, tmp_path, capsys, monkeypatch, case):
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    run, test = runs("criteo")
    args = {
        "checkpoint": run / "checkpoints" / "best.ckpt",
        "input": test,
        "output": tmp_path / "s.parquet",
    }
    named = {
        "checkpoint": tmp_path / "nope.ckpt",
        "input": tmp_path / "nope.txt",
        "output": tmp_path / "s.txt",
        "key": "x",
    }[case]
    args[case if case != "key" else "inptu"] = named
    with pytest.raises(SystemExit) as exit_:
        main([f"{k}={v}" for k, v in args.items()])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert (str(named) if case != "key" else "inptu") in err


@pytest.mark.slow
def test_command_line_writes_csv(runs, tmp_path):
    run, test = runs("adult")
    out = tmp_path / "scores.csv"
    env = {**os.environ, "WIDEDEEP_DEBUG": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "widedeep.cli.predict",
            f"checkpoint={run / 'checkpoints/best.ckpt'}",
            f"input={test}",
            f"output={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scored 80 rows" in result.stderr
    assert_same_scores(pl.read_csv(out), expected(run))


# -- unlabeled input: the format without its label column -----------------------------------------


def without_labels(name: str, test: Path, tmp_path: Path) -> Path:
    """``test`` with its label column removed, as deployment input comes."""
    if name == "synthetic":
        out = tmp_path / "unlabeled.parquet"
        pl.read_parquet(test).drop("label").write_parquet(out)
        return out
    out = tmp_path / f"unlabeled{test.suffix}"
    lines = test.read_text().split("\n")
    if name == "criteo":  # 39 fields: I1..I13, C1..C26, as Kaggle's test.txt
        lines = [line.split("\t", 1)[1] if line else line for line in lines]
    else:  # adult: drop the income field, keep the "|1x3" line and the empty last line
        lines = [line.rsplit(", ", 1)[0] if line and line[0] != "|" else line for line in lines]
    out.write_text("\n".join(lines))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["criteo", "adult", "synthetic"])
def test_unlabeled_input_scores_equal_labelled_input(runs, tmp_path, name):
    run, test = runs(name)
    labelled, _ = predict_file(run, test)
    out = tmp_path / "scores.csv"
    unlabeled, bad = predict_file(run, without_labels(name, test, tmp_path), out)
    assert bad == {} and unlabeled.height == labelled.height > 0
    assert unlabeled.columns == ["row_id", "wide_logit", "deep_logit", "logit", "score"]
    assert pl.read_csv(out).columns == unlabeled.columns  # no label column in the file either
    for column in unlabeled.columns:
        np.testing.assert_array_equal(unlabeled[column].to_numpy(), labelled[column].to_numpy())


@pytest.mark.slow
def test_unlabeled_real_criteo_rows_score_as_labelled(runs, tmp_path):
    name = "criteo/criteo_dac_train_first10k.txt"
    real = real_data(name) / name
    run, _ = runs("criteo")
    lines = real.read_text().splitlines()[:500]  # trailing empty fields kept, as in train.txt
    labelled, unlabeled = tmp_path / "l.txt", tmp_path / "u.txt"
    labelled.write_text("\n".join(lines) + "\n")
    unlabeled.write_text("\n".join(line.split("\t", 1)[1] for line in lines) + "\n")
    assert {line.count("\t") for line in unlabeled.read_text().splitlines()} == {38}
    want, _ = predict_file(run, labelled)
    got, _ = predict_file(run, unlabeled)
    assert "label" not in got.columns and got.height == 500
    np.testing.assert_array_equal(got["logit"].to_numpy(), want["logit"].to_numpy())


@pytest.mark.slow
@pytest.mark.parametrize("first", ["unlabeled", "labelled"])
def test_criteo_mix_of_39_and_40_fields_names_the_line(runs, tmp_path, capsys, monkeypatch, first):
    monkeypatch.delenv("WIDEDEEP_DEBUG", raising=False)
    run, test = runs("criteo")
    lines = test.read_text().splitlines()
    # Line 4 is the other way round from the rest of the file.
    if first == "unlabeled":
        lines = [line if k == 3 else line.split("\t", 1)[1] for k, line in enumerate(lines)]
        message = "line 4: 40 fields, but line 1 has 39 (without the label)"
    else:
        lines[3] = lines[3].split("\t", 1)[1]
        message = "line 4: 39 fields, but line 1 has 40 (with the label)"
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main([f"checkpoint={run}", f"input={mixed}", f"output={tmp_path / 'out.parquet'}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1
    assert f"{mixed}, {message}" in err
    assert not (tmp_path / "out.parquet").exists()
    # on_bad_rows=skip: the odd line is skipped and counted; the rest scored as the first line.
    scores, skipped = predict_file(run, mixed, on_bad_rows="skip")
    assert scores.height == len(lines) - 1 and skipped == {str(mixed): 1}
    assert ("label" in scores.columns) == (first == "labelled")


@pytest.mark.slow
def test_training_still_requires_labels(runs, tmp_path):
    run, test = runs("criteo")
    unlabeled = without_labels("criteo", test, tmp_path)
    (tmp_path / "criteo").mkdir()
    shutil.copy(unlabeled, tmp_path / "criteo" / "tiny.txt")
    cfg = compose_config(
        ["data=criteo", f"data.root={tmp_path}", "data.files.train=criteo/tiny.txt", *FAST],
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(BadInputError, match=r"tiny.txt, line 1: 39 fields, expected 40"):
        train(cfg)
