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
    rows = Rows.from_text(data_file(cfg, root, "train"), bad_rows_policy(cfg))
    rows.split("\t", COLUMNS)
    rows.to_numbers(INTEGER)
    rows.to_label("label", {"0": 0, "1": 1}, label_name(cfg))
    return rows.finish()
