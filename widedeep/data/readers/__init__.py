"""Readers: one per raw format. Each takes the dataset config and the data root and returns
either one polars DataFrame (split later, as the config says) or a dict of the shipped splits
("train", "valid", "test"). Register a reader in `READERS` under the config's ``name``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.data.readers.adult import read_adult
from widedeep.data.readers.avazu import read_avazu
from widedeep.data.readers.criteo import read_criteo
from widedeep.data.readers.libfm import read_libfm
from widedeep.data.readers.movielens import read_movielens
from widedeep.data.readers.synthetic import SyntheticConfig, generate
from widedeep.data.readers.table import read_table

Reader = Callable[[Mapping[str, Any], Path], "pl.DataFrame | dict[str, pl.DataFrame]"]


def read_synthetic(cfg: Mapping[str, Any], root: Path) -> pl.DataFrame:
    return generate(SyntheticConfig(**dict(cfg.get("generator") or {})))


# Each dataset's own reader module: a run of one dataset depends on it and on none of the others.
MODULES = {
    "synthetic": "synthetic",
    "criteo": "criteo",
    "avazu": "avazu",
    "frappe": "libfm",
    "movielens": "movielens",
    "adult": "adult",
    "table": "table",
}

READERS: dict[str, Reader] = {
    "synthetic": read_synthetic,
    "criteo": read_criteo,
    "avazu": read_avazu,
    "frappe": read_libfm,
    "movielens": read_movielens,
    "adult": read_adult,
    "table": read_table,
}
