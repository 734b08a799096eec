"""Avazu CTR prediction (Kaggle 2014) ``train.csv``.

Format: comma-separated with a header ``id,click,hour,C1,banner_pos,site_id,site_domain,
site_category,app_id,app_domain,app_category,device_id,device_ip,device_model,device_type,
device_conn_type,C14..C21``; no quoting. ``id`` exceeds int64, so it stays a string; ``click`` is
0/1; ``hour`` is ``YYMMDDHH`` (UTC, 10 days of October 2014), from which ``hour_of_day`` (0-23)
and ``weekday`` (1 = Monday .. 7 = Sunday) are derived. Every other field is categorical and kept
as a string. ``hour`` stays an integer, which sorts in time order (``split.method=time``). The
Kaggle ``test.csv`` has no ``click`` column: it is accepted only when serving
(``labels="optional"``), and read without a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from ._rows import Rows, bad_rows_policy, data_file, label_name, labels_optional

CATEGORICAL = [
    "C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
    "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
    *[f"C{i}" for i in range(14, 22)],
]
COLUMNS = ["id", "click", "hour", *CATEGORICAL]


def read_avazu(cfg: Mapping[str, Any], root: Path, labels: str = "required") -> pl.DataFrame:
    """``files.train`` -> id, hour (Int64 YYMMDDHH), hour_of_day, weekday, the categorical fields
    (String) and the label (Int8; absent for a file without ``click``, accepted only with
    ``labels="optional"``)."""
    optional = "click" if labels_optional(labels) else None
    path = data_file(cfg, root, "train")
    rows = Rows.from_text(path, bad_rows_policy(cfg), header=COLUMNS, optional=optional)
    names = rows.header or COLUMNS
    rows.split(",", names)
    # chrono needs minutes with hours; the regex stops it accepting 7 or 9 digits.
    digits = pl.col("hour").str.contains(r"^\d{8}$")
    parsed = pl.format("{}00", pl.col("hour")).str.to_datetime("%y%m%d%H%M", strict=False)
    when = pl.when(digits).then(parsed)
    rows.reject(when.is_null(), "hour {value} is not YYMMDDHH", pl.col("hour"))
    rows.frame = rows.frame.with_columns(
        when.dt.hour().cast(pl.Int64).alias("hour_of_day"),
        when.dt.weekday().cast(pl.Int64).alias("weekday"),
        pl.col("hour").cast(pl.Int64),
    )
    if "click" in names:
        rows.to_label("click", {"0": 0, "1": 1}, label_name(cfg))
    return rows.finish()
