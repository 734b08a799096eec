"""Criteo Display Advertising Challenge (Kaggle 2014) raw files.

Format: tab-separated, no header, 40 fields per line: ``label`` (0/1), ``I1..I13`` integer
counts (may be empty = missing, may be negative, e.g. ``I2 = -1``), ``C1..C26`` 32-bit hashes
written as 8 hex characters (may be empty = missing). Trailing empty fields are kept, so every
line has 39 tabs. The Kaggle ``train.txt``, its prefixes and the Criteo 1TB ``day_N`` files share
this layout. There is no shipped split: the pipeline splits the rows as ``cfg.split`` says.
When serving (``labels="optional"``), unlabeled files are accepted too: 39 fields, ``I1..I13``
and ``C1..C26`` (the Kaggle ``test.txt``); the first line decides, and every line must match.

Also read: the same fields comma-separated, with or without the header ``label,I1,..,C26``
(DeepCTR's ``criteo_sample.txt`` and the CSVs pandas writes, where a count column with missing
values comes out as floats: ``260.0``). The first line decides the separator and the header;
integers written as integral floats are accepted in every layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ._rows import (
    Rows,
    bad_rows_policy,
    data_file,
    describe_first_line,
    label_name,
    labels_optional,
)
from ._shown import opening_line

INTEGER = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]
COLUMNS = ["label", *INTEGER, *CATEGORICAL]


def read_criteo(
    cfg: Mapping[str, Any], root: Path, labels: str = "required"
) -> pl.DataFrame:
    """``files.train`` -> I1..I13 (Int64, null = missing), C1..C26 (String), label (Int8; absent
    for an unlabeled file, accepted only with ``labels="optional"``)."""
    path, policy = data_file(cfg, root, "train"), bad_rows_policy(cfg)
    optional = labels_optional(labels)
    sep, header = _layout(path)
    if sep == "\t" and not header:
        unlabeled = optional and _first_line_fields(path) == len(COLUMNS) - 1
        fast = _read_well_formed(path, label_name(cfg), COLUMNS[1:] if unlabeled else COLUMNS)
        if fast is not None:
            return fast
    # A CSV, or something is malformed: the line-by-line reader names the line (or skips and
    # counts).
    rows = Rows.from_text(path, policy, header=COLUMNS if header else None, sep=sep,
                          optional="label" if optional else None)
    rows.about = describe_first_line(path)
    names = rows.header or rows.layout(sep, COLUMNS, "label" if optional else None)
    rows.split(sep, names)
    rows.to_integers(INTEGER)
    if "label" in names:
        rows.to_label("label", {"0": 0, "1": 1}, label_name(cfg))
    return rows.finish()


def _read_well_formed(path: Path, label: str, columns: list[str]) -> pl.DataFrame | None:
    """polars' CSV reader with a strict schema: about twice as fast as checking every line, and
    it fails (-> None) on exactly what the checking reader would reject: a wrong field count, a
    non-integer count, a label outside {0, 1} or a NUL byte. ``columns``: `COLUMNS`, or without
    the label."""
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
            new_columns=columns,
            schema={c: schema[c] for c in columns},
            quote_char=None,
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError):
        return None
    if frame.height == 0:
        return None
    labelled = "label" in columns
    if labelled and (frame["label"].null_count() or not frame["label"].is_in([0, 1]).all()):
        return None
    # polars fills a short line's missing trailing fields with nulls instead of failing; a line
    # with too many fields does fail, so exactly 39 (38) tabs a row <=> 39 (38) * rows in all.
    tabs, nul = _count_tabs(path)
    if nul or tabs != (len(columns) - 1) * frame.height:
        return None
    # The same column order as the checking reader: features first, the label last.
    kept = [pl.col("label").alias(label)] if labelled else []
    return frame.select(*INTEGER, *CATEGORICAL, *kept)


def _layout(path: Path, limit: int = 1 << 20) -> tuple[str, bool]:
    """(separator, whether line 1 is the header ``label,I1..C26``) from the first line: a tab
    if it has one, else a comma if it has the commas of 39 or 40 fields."""
    line = opening_line(path, limit)
    sep = "\t" if "\t" in line or line.count(",") < len(COLUMNS) - 2 else ","
    fields = [f.strip() for f in line.split(sep)]
    return sep, fields in (COLUMNS, COLUMNS[1:])


def _first_line_fields(path: Path, limit: int = 1 << 20) -> int:
    """Tab-separated fields on the first line (its first MiB): 40 labelled, 39 unlabeled."""
    with open(path, "rb") as f:
        return f.readline(limit).count(b"\t") + 1


def _count_tabs(path: Path, chunk: int = 1 << 24) -> tuple[int, bool]:
    """Tabs in the file, and whether it holds a NUL byte; read in 16 MiB chunks (the file may
    be larger than memory)."""
    total, nul = 0, False
    with open(path, "rb") as f:
        while block := f.read(chunk):
            total += block.count(b"\t")
            nul = nul or b"\x00" in block
    return total, nul
