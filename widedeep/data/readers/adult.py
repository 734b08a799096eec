"""UCI Adult / Census Income, the data of the TensorFlow Wide & Deep tutorial.

Format: ``adult.data`` (train) and ``adult.test`` (test), comma-plus-space separated, no
header, 15 fields: age, workclass, fnlwgt, education, education_num, marital_status,
occupation, relationship, race, gender (UCI ``sex``), capital_gain, capital_loss,
hours_per_week, native_country, income. ``?`` = missing. Quirks: ``adult.test`` starts with the
line ``|1x3 Cross validator`` and its labels end in a dot (``>50K.``); both files end in an empty
line. Label: income ``>50K``. The split is shipped (train / test); valid is a seeded random
``split.valid_ratio`` share of train. ``age_bucket`` uses the tutorial's age boundaries.
When serving (``labels="optional"``), a file without the income column (14 fields on every
line) is accepted too, and read without a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.data.split import random_split

from ._rows import Rows, bad_rows_policy, bucket_labels, data_file, label_name, labels_optional

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "gender", "capital_gain", "capital_loss", "hours_per_week",
    "native_country", "income",
]
INTEGER = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
LABELS = {">50K": 1, "<=50K": 0, ">50K.": 1, "<=50K.": 0}
AGE_BOUNDARIES = (18, 25, 30, 35, 40, 45, 50, 55, 60, 65)


def read_adult_file(
    path: Path, policy: str, label: str, labels: str = "required"
) -> pl.DataFrame:
    rows = Rows.from_text(path, policy, comment="|")
    names = rows.layout(",", COLUMNS, "income" if labels_optional(labels) else None)
    rows.split(",", names, strip=True, null_values=("", "?"))
    rows.to_numbers(INTEGER)
    if "income" in names:
        rows.to_label("income", LABELS, label)
    age_bucket = bucket_labels(pl.col("age"), AGE_BOUNDARIES).alias("age_bucket")
    return rows.finish().with_columns(age_bucket)


def read_adult(cfg: Mapping[str, Any], root: Path) -> dict[str, pl.DataFrame]:
    """``files.train`` and ``files.test``; valid = a ``split.valid_ratio`` share of train."""
    policy, label = bad_rows_policy(cfg), label_name(cfg)
    train = read_adult_file(data_file(cfg, root, "train"), policy, label)
    test = read_adult_file(data_file(cfg, root, "test"), policy, label)
    split = cfg.get("split") or {}
    ratio = float(split.get("valid_ratio", 0.1))
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"adult: split.valid_ratio must be in (0, 1), got {ratio}")
    parts = random_split(train, {"train": 1.0 - ratio, "valid": ratio}, int(split.get("seed", 0)))
    return {**parts, "test": test}
