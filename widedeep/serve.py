"""widedeep-predict: score raw rows, in the dataset's own file format, with a trained run.

    widedeep-predict checkpoint=RUN/checkpoints/best.ckpt input=adult.test output=scores.csv

Keys (key=value, like widedeep-train):
  checkpoint   a run's checkpoint, or the run directory (its checkpoints/best.ckpt)
  input        a raw file as the dataset ships it (Criteo TSV, adult.test, a libFM file, ...)
  output       scores.parquet (default) or a .csv path: the suffix picks the format
  reader       the format of input; default the run's dataset (a generated dataset: table,
               i.e. a Parquet or CSV file of raw columns)
  on_bad_rows  error or skip; default the run's data.on_bad_rows
  batch_size   rows per forward pass; default the run's data.eval_batch_size

The run directory holds config.yaml (its data section: reader, features, bad-row policy) and
preprocessor/ (vocabularies, dense statistics, crosses: fitted on the training split only), so
no training data is needed. Unseen categories get the OOV id (1), as at training time.

Labels are optional here (training still requires them): the readers are called with
labels="optional", so input may be the format without its label column, e.g. Criteo lines of
39 fields (I1-I13, C1-C26, as Kaggle's test.txt), an Avazu CSV without click, adult rows without
income, MovieLens ratings without rating, libFM lines without the label token, a table without
the label column. The first line (or the header) decides for the whole file: a line the other
way round is a bad row (an error naming file and line, or skipped with on_bad_rows=skip). The
label plays no part in the scores: the same rows score the same with or without it.

Output columns: row_id (position among the rows read), label (only when the input has one; no
label column otherwise), wide_logit, deep_logit, logit and score = sigmoid(logit).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import OmegaConf

from . import cache
from .allocator import keep_freed_memory
from .checkpoint import model_from_checkpoint
from .data import ColumnarData
from .datasets import READERS
from .datasets._rows import BadInputError, bad_rows_policy, collect_bad_rows, data_file, label_name
from .datasets.adult import read_adult_file
from .datasets.avazu import read_avazu
from .datasets.criteo import read_criteo
from .datasets.libfm import read_feature_map, read_libfm_file
from .datasets.movielens import read_movielens
from .errors import report_user_error
from .features import Schema
from .io import atomic_write
from .model import WideDeep
from .pipeline import data_root
from .predict import predict_split
from .preprocess import Preprocessor, oov_rate

log = logging.getLogger("widedeep")
PROG = "widedeep-predict"
DEFAULTS = {
    "checkpoint": "???",
    "input": "???",
    "output": "scores.parquet",
    "reader": None,
    "on_bad_rows": None,
    "batch_size": None,
}
# Readers whose one data file we swap for the input (MovieLens keeps its side tables).
SWAP_FILE = {
    "criteo": ("train", read_criteo),
    "avazu": ("train", read_avazu),
    "movielens": ("ratings", read_movielens),
}
# Serving input need not have labels (the readers' default, for training, is "required").
LABELS = "optional"
TABLE = "table"
WRITERS = {".parquet": "write_parquet", ".csv": "write_csv"}


def checkpoint_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, run directory) from a checkpoint file or a run directory."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run


def load_preprocessor(run: Path, data_cfg: Mapping[str, Any]) -> Preprocessor:
    """The run's fitted preprocessing: ``run/preprocessor``, else (a run from before training
    saved it) the processed-data cache entry of the run's data config, if still there."""
    saved = run / "preprocessor"
    if (saved / "preprocessor.json").is_file():
        return Preprocessor.load(saved)
    name = str(data_cfg.get("name"))
    if name in READERS and cache.enabled(data_cfg):
        root = data_root(data_cfg)
        digest, _ = cache.fingerprint(data_cfg, root, READERS[name])
        entry = cache.entry_dir(cache.cache_root(data_cfg, root), name, digest)
        if cache.trusted(entry, digest):
            return Preprocessor.load(entry / "preprocessor")
    raise FileNotFoundError(
        f"{saved}: no saved preprocessing, and no cache entry matches the run's data config "
        "(retrain with this version of widedeep-train, which saves it)"
    )


def read_raw(data_cfg: Mapping[str, Any], path: Path, reader: str | None = None) -> pl.DataFrame:
    """Raw rows of ``path`` through the dataset's own reader: the same parsing, checks and
    line-numbered errors (or counted skips) as at training time, except that the label column
    may be absent (no label column then)."""
    name = reader or (TABLE if data_cfg.get("name") == "synthetic" else str(data_cfg.get("name")))
    policy, label = bad_rows_policy(data_cfg), label_name(data_cfg)
    if name == TABLE:
        return _read_table(path)
    if name == "adult":
        return read_adult_file(path, policy, label, LABELS)
    root = data_root(data_cfg)
    if name == "frappe":
        fields = read_feature_map(data_file(data_cfg, root, "feature_map"))
        return read_libfm_file(path, fields, policy, label, LABELS)
    if name in SWAP_FILE:
        files = {k: str(root / v) for k, v in (data_cfg.get("files") or {}).items()}
        key, read = SWAP_FILE[name]
        files[key] = str(path.resolve())  # absolute: root / path is path
        out = read({**data_cfg, "files": files}, root, labels=LABELS)
        return out.collect() if isinstance(out, pl.LazyFrame) else out
    known = sorted({TABLE, "adult", "frappe", *SWAP_FILE})
    raise ValueError(f"reader={name!r}: expected one of {known}")


def _read_table(path: Path) -> pl.DataFrame:
    """Already-parsed raw columns (e.g. the synthetic log's) in a Parquet or CSV file."""
    suffix = path.suffix.lower()
    if suffix not in WRITERS:
        raise BadInputError(path, "reader=table reads .parquet or .csv files")
    try:
        return pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path)
    except Exception as e:  # polars raises several types for a malformed file
        raise BadInputError(path, f"cannot be read as {suffix[1:]} ({e})") from e


@dataclass
class Predictor:
    """A trained model with the preprocessing it was trained on."""

    model: WideDeep
    preprocessor: Preprocessor
    data_cfg: dict[str, Any]

    @classmethod
    def load(cls, checkpoint: str | Path) -> Predictor:
        path, run = checkpoint_paths(checkpoint)
        config = run / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"{config}: no such file (the run's resolved config)")
        data_cfg = OmegaConf.to_container(OmegaConf.load(config).data, resolve=True)
        model, hp = model_from_checkpoint(path)
        pre = load_preprocessor(run, data_cfg)
        if pre.schema != Schema.from_dict(hp["schema"]):
            raise ValueError(
                f"{run}: the saved preprocessing does not match the checkpoint's "
                "schema (fields or vocabulary sizes differ)"
            )
        return cls(model, pre, data_cfg)

    def score(
        self, raw: pl.DataFrame, where: str = "input", batch_size: int = 8192
    ) -> pl.DataFrame:
        """Raw rows -> row_id, [label], wide_logit, deep_logit, logit, score."""
        pre, label = self.preprocessor, self.preprocessor.spec.label
        encoded = pre.transform(raw, where)
        has_label = label in encoded.columns
        if not has_label:  # serving rows: ColumnarData wants a label, any valid one will do
            encoded = encoded.with_columns(pl.lit(0.0, pl.Float32).alias(label))
        unseen = {k: v for k, v in oov_rate(encoded, pre.spec.fields).items() if v}
        if unseen:
            log.info(
                "%s: share of unseen values (OOV id): %s",
                where,
                {k: f"{v:.2%}" for k, v in unseen.items()},
            )
        data = ColumnarData.from_frame(encoded, pre.schema, where)
        out = predict_split(self.model, data, batch_size)
        out = out.with_columns((1 / (1 + (-pl.col("logit")).exp())).alias("score"))
        return out if has_label else out.drop("label")


def predict_file(
    checkpoint: str | Path,
    input: str | Path,
    output: str | Path | None = None,
    reader: str | None = None,
    on_bad_rows: str | None = None,
    batch_size: int | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Score a raw file; write the scores atomically if ``output``. Returns (scores, ``{file:
    bad rows skipped}``)."""
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.suffix.lower() not in WRITERS:
        raise ValueError(f"output={out_path}: the suffix must be one of {sorted(WRITERS)}")
    path = Path(input).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input {path}: no such file")
    predictor = Predictor.load(checkpoint)
    if on_bad_rows is not None:
        predictor.data_cfg["on_bad_rows"] = on_bad_rows
    with collect_bad_rows() as bad:
        raw = read_raw(predictor.data_cfg, path, reader)
    size = batch_size or int(predictor.data_cfg.get("eval_batch_size") or 8192)
    scores = predictor.score(raw, f"input {path}", size)
    if out_path is not None:
        atomic_write(out_path, getattr(scores, WRITERS[out_path.suffix.lower()]))
    return scores, {f: n for f, n in bad.items() if n}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s")
    try:
        keep_freed_memory()
        loose = [a for a in args if "=" not in a]
        if loose:
            raise ValueError(f"expected key=value arguments, got {loose} (--help lists the keys)")
        unknown = sorted({a.split("=", 1)[0] for a in args} - DEFAULTS.keys())
        if unknown:  # a mistyped key is an error, not ignored
            raise ValueError(f"unknown keys {unknown}; the keys are {list(DEFAULTS)}")
        cfg = OmegaConf.merge(OmegaConf.create(DEFAULTS), OmegaConf.from_dotlist(args))
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ValueError(f"missing {missing}: widedeep-predict checkpoint=RUN input=FILE")
        scores, bad = predict_file(
            cfg.checkpoint, cfg.input, cfg.output, cfg.reader, cfg.on_bad_rows, cfg.batch_size
        )
    except Exception as err:
        sys.exit(report_user_error(PROG, err))
    skipped = f"; skipped bad rows {bad}" if bad else ""
    log.info("scored %d rows -> %s%s", scores.height, cfg.output, skipped)


if __name__ == "__main__":
    main()
