"""Raw rows of a file in a dataset's own format, for scoring: the training readers with
optional labels, or a table of raw columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.data.pipeline import data_root
from widedeep.data.readers._rows import (
    BadInputError,
    Rows,
    bad_rows_policy,
    data_file,
    label_name,
)
from widedeep.data.readers._shown import plain
from widedeep.data.readers.adult import read_adult_file
from widedeep.data.readers.avazu import read_avazu
from widedeep.data.readers.criteo import read_criteo
from widedeep.data.readers.libfm import read_feature_map, read_libfm_file
from widedeep.data.readers.movielens import read_movielens
from widedeep.data.readers.table import FORMATS, read_files

# Readers whose one data file we swap for the input (MovieLens keeps its side tables).
SWAP_FILE = {
    "criteo": ("train", read_criteo),
    "avazu": ("train", read_avazu),
    "movielens": ("ratings", read_movielens),
}
# Serving input need not have labels (the readers' default, for training, is "required").
LABELS = "optional"
TABLE = "table"
TABLE_SUFFIXES = (".parquet", ".csv")


def read_raw(data_cfg: Mapping[str, Any], path: Path, reader: str | None = None) -> pl.DataFrame:
    """Raw rows of ``path`` through the dataset's own reader: the same parsing, checks and
    line-numbered errors (or counted skips) as at training time, except that the label column
    may be absent (no label column then)."""
    name = reader or (TABLE if data_cfg.get("name") == "synthetic" else str(data_cfg.get("name")))
    policy, label = bad_rows_policy(data_cfg), label_name(data_cfg)
    if name == TABLE and data_cfg.get("name") == TABLE:  # the run's own columns and types
        # A file of a known suffix is read as such (a run trained on Parquet scores a CSV).
        fmt = "auto" if path.suffix.lower() in FORMATS else data_cfg.get("format")
        return read_files({**data_cfg, "files": [str(path)], "format": fmt}, [path], LABELS)
    if name == TABLE:
        return _read_table(path, policy)
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


def _read_table(path: Path, policy: str) -> pl.DataFrame:
    """Already-parsed raw columns (e.g. the synthetic log's) in a Parquet or CSV file; a text
    value holding a NUL byte is a bad row (line numbers count a CSV's header)."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise BadInputError(path, "reader=table reads .parquet or .csv files")
    try:  # polars' CSV reader drops a leading byte-order mark
        frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path)
    except pl.exceptions.NoDataError:
        frame = pl.DataFrame()
    except Exception as e:  # polars raises several types for a malformed file
        raise BadInputError(path, f"cannot be read as {suffix[1:]} ({plain(str(e))})") from e
    if frame.is_empty():  # as for a text format: no rows to score is a mistake
        raise BadInputError(path, "the file is empty (no rows)")
    if {"line", "text"} & set(frame.columns):  # `Rows` bookkeeping names: no row checks
        return frame
    csv = suffix == ".csv"
    lines = frame.with_row_index("line", offset=2 if csv else 1)
    rows = Rows(path, lines, policy, unit="line" if csv else "row")
    rows.refuse_nul([c for c, t in frame.schema.items() if t == pl.String])
    return rows.finish()
