"""Criteo Display Advertising Challenge (Kaggle 2014) raw files.

Format: tab-separated, no header, 40 fields per line: ``label`` (0/1), ``I1..I13`` integer
counts (may be empty = missing, may be negative, e.g. ``I2 = -1``), ``C1..C26`` 32-bit hashes
written as 8 hex characters (may be empty = missing). Trailing empty fields are kept, so every
line has 39 tabs. The Kaggle ``train.txt``, its prefixes and the Criteo 1TB ``day_N`` files share
this layout. There is no shipped split: the pipeline splits the rows as ``cfg.split`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ._rows import Rows, bad_rows_policy, data_file, label_name

INTEGER = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *INTEGER, *CATEGORICAL]


def read_criteo(cfg: Mapping[str, Any], root: Path) -> pl.DataFrame:
    """``files.train`` -> label (Int8), I1..I13 (Int64, null = missing), C1..C26 (String)."""
    path, policy = data_file(cfg, root, "train"), bad_rows_policy(cfg)
    fast = _read_well_formed(path, label_name(cfg))
    if fast is not None:
        return fast
    # Something is malformed: the line-by-line reader names the line (or skips and counts).
    rows = Rows.from_text(path, policy)
    rows.split("\t", COLUMNS)
    rows.to_numbers(INTEGER)
    rows.to_label("label", {"0": 0, "1": 1}, label_name(cfg))
    return rows.finish()


def _read_well_formed(path: Path, label: str) -> pl.DataFrame | None:
    """polars' CSV reader with a strict schema: about twice as fast as checking every line, and
    it fails (-> None) on exactly what the checking reader would reject: a wrong field count, a
    non-integer count or a label outside {0, 1}."""
    schema = {
        "label": pl.Int8,
        **dict.fromkeys(INTEGER, pl.Int64),
        **dict.fromkeys(CATEGORICAL, pl.String),
    }
    try:
        frame = pl.read_csv(
            path,
            separator="\t",
            has_header=False,
            new_columns=COLUMNS,
            schema=schema,
            quote_char=None,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return None
    if frame.height == 0 or frame["label"].null_count() or not frame["label"].is_in([0, 1]).all():
        return None
    # polars fills a short line's missing trailing fields with nulls instead of failing; a line
    # with too many fields does fail, so exactly 39 tabs a row <=> 39 * rows tabs in all.
    if _count_tabs(path) != (len(COLUMNS) - 1) * frame.height:
        return None
    # The same column order as the checking reader: features first, the label last.
    return frame.select(*INTEGER, *CATEGORICAL, pl.col("label").alias(label))


def _count_tabs(path: Path, chunk: int = 1 << 24) -> int:
    """Tabs in the file, read in 16 MiB chunks (the file may be larger than memory)."""
    total = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            total += block.count(b"\t")
    return total
