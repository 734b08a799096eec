"""libFM / libSVM files with one-hot fields, as shipped for Frappe by NFM and BARS (Frappe_x1).

Format: one row per line, ``label idx:1 idx:1 ...`` separated by spaces (or tabs), LF or CRLF.
The label is ``1`` / ``-1`` (or ``1`` / ``0``). Every row has exactly one token per field, in
field order, as in all the NFM / BARS files. Indices are global; the feature map
(``files.feature_map``, a TSV with header ``index field value``) names each index's field and
raw value. Columns come out as the raw values (strings: ``user`` = the Frappe user id,
``daytime`` = ``morning``, ...), so vocabularies and error messages speak the data's language.
Splits are shipped: ``files.train``, ``files.valid``, ``files.test``. When serving
(``labels="optional"``), lines of field tokens only (no label token) are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ._rows import STRICT, Rows, bad_rows_policy, data_file, label_name, labels_optional

LABELS = {"1": 1, "+1": 1, "-1": 0, "0": 0}


def read_feature_map(path: Path) -> dict[str, pl.DataFrame]:
    """field -> (index, value) table, fields in order of their first index."""
    rows = Rows.from_text(path, STRICT, header=["index", "field", "value"], sep="\t")
    rows.split("\t", ["index", "field", "value"])
    rows.to_numbers(["index"])
    rows.reject(~pl.col("index").is_first_distinct(), "index listed twice")
    table = rows.finish().sort("index")
    fields = table["field"].unique(maintain_order=True).to_list()
    return {f: table.filter(pl.col("field") == f).select("index", "value") for f in fields}


def read_libfm_file(
    path: Path, fields: dict[str, pl.DataFrame], policy: str, label: str,
    labels: str = "required",
) -> pl.DataFrame:
    """One libFM file -> one String column per field and the label (Int8; absent for lines
    without a label token, accepted only with ``labels="optional"``)."""
    rows = Rows.from_text(path, policy)
    rows.frame = rows.frame.with_columns(
        pl.col("text").str.strip_chars().str.replace_all(r"\s+", " ").alias("_tokens")
    )
    optional = "_label" if labels_optional(labels) else None
    names = rows.layout(" ", ["_label", *fields], optional, source="_tokens")
    rows.split(" ", names, source="_tokens")
    for name, table in fields.items():
        parts = pl.col(name).str.split_exact(":", 1)
        index = parts.struct.field("field_0").cast(pl.Int64, strict=False)
        value = parts.struct.field("field_1").cast(pl.Float64, strict=False)
        rows.reject(index.is_null() | (value != 1.0).fill_null(True),
                    f"token {{value}} for {name} is not index:1", pl.col(name))
        raw = index.replace_strict(table["index"], table["value"], default=None)
        rows.frame = rows.frame.with_columns(raw.alias(f"_{name}"))
        rows.reject(pl.col(f"_{name}").is_null(),
                    f"index {{value}} is not a value of field {name} in the feature map", index)
    if "_label" in names:
        rows.to_label("_label", LABELS, label)
    kept = [label] if "_label" in names else []
    rows.frame = rows.frame.select(*[pl.col(f"_{f}").alias(f) for f in fields], *kept)
    return rows.finish()


def read_libfm(cfg: Mapping[str, Any], root: Path) -> dict[str, pl.DataFrame]:
    """The shipped train / valid / test files, decoded through ``files.feature_map``."""
    fields = read_feature_map(data_file(cfg, root, "feature_map"))
    policy, label = bad_rows_policy(cfg), label_name(cfg)
    return {
        split: read_libfm_file(data_file(cfg, root, split), fields, policy, label)
        for split in ("train", "valid", "test")
    }
