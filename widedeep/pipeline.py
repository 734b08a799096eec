"""The data pipeline: a dataset config -> raw rows (a reader) -> split -> preprocessing -> tensors.

Readers know nothing of models; the returned `ProcessedData` knows nothing of files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from .data import ColumnarData, ProcessedData
from .datasets import READERS
from .preprocess import FeatureSpec, Preprocessor
from .split import SPLITS, random_split, time_split


def data_root(cfg: Mapping[str, Any] | None = None) -> Path:
    """The data root: the config's ``root``, else $WIDEDEEP_DATA_DIR, else ./data."""
    root = (cfg or {}).get("root") or os.environ.get("WIDEDEEP_DATA_DIR") or "data"
    return Path(root).expanduser()


def split_frame(frame: pl.DataFrame, cfg: Mapping[str, Any]) -> dict[str, pl.DataFrame]:
    split = dict(cfg.get("split") or {})
    method = split.get("method", "random")
    ratios = split.get("ratios") or {"train": 0.8, "valid": 0.1, "test": 0.1}
    if method == "random":
        return random_split(frame, ratios, int(split.get("seed", 0)))
    if method == "time":
        return time_split(frame, ratios, split.get("column", "timestamp"))
    raise ValueError(f"data.split.method must be 'random' or 'time', got {method!r}")


def load_data(cfg: Mapping[str, Any]) -> ProcessedData:
    """Build a dataset from its config (a ``conf/data/*.yaml`` group entry)."""
    name = cfg.get("name")
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(READERS)}")
    raw = READERS[name](cfg, data_root(cfg))
    frames = raw if isinstance(raw, dict) else split_frame(raw, cfg)
    missing = [s for s in SPLITS if s not in frames]
    if missing:
        raise ValueError(f"dataset {name!r}: reader returned no {missing} split")
    spec = FeatureSpec.from_config(cfg.get("features") or {})
    pre = Preprocessor(spec).fit(frames["train"])
    schema = pre.schema
    keep = list(cfg.get("keep_columns") or [])
    splits, extras = {}, {}
    for split, frame in frames.items():
        where = f"dataset {name!r}, split {split!r}"
        splits[split] = ColumnarData.from_frame(pre.transform(frame, where), schema, where)
        extras[split] = frame.select([c for c in keep if c in frame.columns])
    info = {"name": name, "rows": {s: len(d) for s, d in splits.items()}}
    return ProcessedData(schema=schema, splits=splits, info=info, extras=extras, preprocessor=pre)
