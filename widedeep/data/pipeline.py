"""The data pipeline: a dataset config -> raw rows (a reader) -> split -> preprocessing ->
(cache) -> tensors.

Readers know nothing of models; the returned `ProcessedData` knows nothing of files. A reader
may return eager DataFrames or LazyFrames: a LazyFrame is split, fitted and (with the cache on)
encoded and written batch by batch, so its rows never need to fit in memory at once; only the
final tensors do (see `cache` for the on-disk form).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from widedeep.data import cache
from widedeep.data.cache import SPLIT_COLUMN
from widedeep.data.columnar import ColumnarData, ProcessedData
from widedeep.data.preprocess import FeatureSpec, Frame, Preprocessor, column_names
from widedeep.data.readers import READERS
from widedeep.data.readers._rows import collect_bad_rows
from widedeep.data.split import SPLITS, random_split, time_split

log = logging.getLogger("widedeep")
_ROW = "__row"


def data_root(cfg: Mapping[str, Any] | None = None) -> Path:
    """The data root: the config's ``root``, else $WIDEDEEP_DATA_DIR, else ./data."""
    root = (cfg or {}).get("root") or os.environ.get("WIDEDEEP_DATA_DIR") or "data"
    return Path(root).expanduser()


def _reader(cfg: Mapping[str, Any]) -> Callable[..., Any]:
    name = cfg.get("name")
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(READERS)}")
    return READERS[name]



def split_assignment(frame: Frame, cfg: Mapping[str, Any]) -> np.ndarray:
    """Each row's split as an index into SPLITS (int8).

    The rows are exactly those of `random_split` / `time_split` (they run on a frame of row
    numbers, plus the time column), so an eager and a lazy source split the same way.
    """
    split = dict(cfg.get("split") or {})
    method = split.get("method", "random")
    ratios = split.get("ratios") or {"train": 0.8, "valid": 0.1, "test": 0.1}
    if method == "random":
        n = frame.height if isinstance(frame, pl.DataFrame) else (
            frame.select(pl.len()).collect(engine="streaming").item()
        )
        parts = random_split(pl.DataFrame({_ROW: np.arange(n)}), ratios, int(split.get("seed", 0)))
    elif method == "time":
        column = split.get("column", "timestamp")
        if column not in column_names(frame):
            raise ValueError(f"time split: no column {column!r}; columns are {column_names(frame)}")
        times = frame.lazy().select(column).with_row_index(_ROW).collect(engine="streaming")
        n, parts = times.height, time_split(times, ratios, column)
    else:
        raise ValueError(f"data.split.method must be 'random' or 'time', got {method!r}")
    missing = [s for s in SPLITS if s not in parts]
    if missing:
        raise ValueError(f"data.split.ratios {ratios} names no {missing} split")
    assign = np.empty(n, dtype=np.int8)
    for k, name in enumerate(SPLITS):
        assign[parts[name][_ROW].to_numpy()] = k
    return assign


def with_split(frame: Frame, assign: np.ndarray) -> Frame:
    """Add `SPLIT_COLUMN`; for a LazyFrame, batch by batch from the row numbers."""
    if isinstance(frame, pl.DataFrame):
        return frame.with_columns(pl.Series(SPLIT_COLUMN, assign))
    look_up = pl.col(_ROW).map_batches(
        lambda rows: pl.Series(assign[rows.to_numpy()]), return_dtype=pl.Int8, is_elementwise=True
    )
    return frame.with_row_index(_ROW).with_columns(look_up.alias(SPLIT_COLUMN)).drop(_ROW)


def read_split(cfg: Mapping[str, Any]) -> tuple[Frame, dict[str, int]]:
    """Run the reader; return all rows with `SPLIT_COLUMN`, and ``{file: bad rows skipped}``."""
    name = cfg.get("name")
    with collect_bad_rows() as bad:
        raw = _reader(cfg)(cfg, data_root(cfg))
    if isinstance(raw, Mapping):
        missing = [s for s in SPLITS if s not in raw]
        if missing:
            raise ValueError(f"dataset {name!r}: reader returned no {missing} split")
        columns = {s: column_names(raw[s]) for s in SPLITS}
        for s in SPLITS[1:]:
            if set(columns[s]) != set(columns["train"]):
                raise ValueError(f"dataset {name!r}: split {s!r} has columns {columns[s]}, "
                                 f"train has {columns['train']}")
        lazy = any(isinstance(f, pl.LazyFrame) for f in raw.values())
        parts = [
            (raw[s].lazy() if lazy else raw[s]).with_columns(pl.lit(k, pl.Int8).alias(SPLIT_COLUMN))
            for k, s in enumerate(SPLITS)
        ]
        frame = pl.concat(parts, how="vertical_relaxed")
    else:
        frame = with_split(raw, split_assignment(raw, cfg))
    return frame, {f: n for f, n in bad.items() if n}



@dataclass
class Processed:
    """A fitted preprocessor and the encoded rows of every split (with `SPLIT_COLUMN`), not yet
    materialised: for a lazy source, ``encoded`` is a LazyFrame."""

    preprocessor: Preprocessor
    encoded: Frame
    info: dict[str, Any] = field(default_factory=dict)


def process(cfg: Mapping[str, Any]) -> Processed:
    """Read, split, fit on the training split, and encode all rows."""
    name = cfg.get("name")
    t0 = time.perf_counter()
    frame, bad_rows = read_split(cfg)
    t1 = time.perf_counter()
    spec = FeatureSpec.from_config(cfg.get("features") or {})
    pre = Preprocessor(spec).fit(frame.filter(pl.col(SPLIT_COLUMN) == SPLITS.index("train")))
    t2 = time.perf_counter()
    names = column_names(frame)
    keep = [c for c in cfg.get("keep_columns") or () if c in names]
    encoded = pre.transform(frame, f"dataset {name!r}", passthrough=[*keep, SPLIT_COLUMN])
    timings = {"read_split": t1 - t0, "fit": t2 - t1, "encode": time.perf_counter() - t2}
    # For a lazy source, reading happens during fit and write, and encoding during write.
    info = {"name": name, "keep_columns": keep, "bad_rows": bad_rows, "timings_s": timings}
    if bad_rows:
        log.warning("dataset %r: skipped bad rows %s", name, bad_rows)
    return Processed(pre, encoded, info)


def materialise(processed: Processed) -> ProcessedData:
    """Encoded rows -> per-split tensors, in memory (the path without the cache)."""
    pre, info = processed.preprocessor, dict(processed.info)
    encoded = processed.encoded
    encoded = encoded.collect(engine="streaming") if isinstance(encoded, pl.LazyFrame) else encoded
    schema, keep = pre.schema, info["keep_columns"]
    splits, extras = {}, {}
    for split, frame in cache.split_parts(encoded).items():
        where = f"dataset {info['name']!r}, split {split!r}"
        splits[split] = ColumnarData.from_frame(frame, schema, where)
        extras[split] = frame.select(keep)
    info |= {"cache": None, "cache_hit": False, "rows": {s: len(d) for s, d in splits.items()}}
    info["click_rate"] = {
        s: float(d.label.double().mean()) if len(d) else None for s, d in splits.items()
    }
    return ProcessedData(schema=schema, splits=splits, info=info, extras=extras, preprocessor=pre)



def prepare(cfg: Mapping[str, Any]) -> tuple[Path, dict[str, Any], bool]:
    """Make sure the cache entry of ``cfg`` exists and matches its manifest (every file's size
    and hash), building it if not: (its directory, its manifest, whether it was there already).
    Loads no tensors; `load_data` does."""
    root = data_root(cfg)
    name = str(cfg.get("name"))
    digest, key = cache.fingerprint(cfg, root, _reader(cfg))
    target = cache.entry_dir(cache.cache_root(cfg, root), name, digest)
    manifest, problem = cache.check(target, digest)
    if manifest is not None:
        log.info("dataset %r: reusing %s", name, target)
        return target, manifest, True
    rebuild: dict[str, Any] = {}
    if target.exists():  # there, but damaged, incomplete or from an older widedeep
        if not cache.writable(target.parent):
            raise cache.CacheDamagedError(
                f"cache entry of dataset {name!r} cannot be trusted: {problem}; the cache "
                f"folder {target.parent} is not writable, so it cannot be rebuilt there: delete "
                "the entry, or set data.cache_dir (or $WIDEDEEP_CACHE_DIR) to another folder")
        rebuild = {"rebuilds": cache.rebuilds(target) + 1, "rebuilt_because": problem}
        log.warning("dataset %r: cache entry %s cannot be trusted (%s); rebuilding it (rebuild "
                    "%d of this entry)", name, target, problem, rebuild["rebuilds"])
    started = time.perf_counter()
    processed = process(cfg)
    manifest = cache.write(target, digest, key, processed.preprocessor, processed.encoded,
                           {**processed.info, **rebuild})
    log.info("dataset %r: cached in %s (%.1f s)", name, target, time.perf_counter() - started)
    return target, manifest, False


def load_data(cfg: Mapping[str, Any]) -> ProcessedData:
    """Build a dataset from its config (a ``conf/data/*.yaml`` group entry), through the cache
    when ``data.cache`` is on (the default for file datasets). A fresh entry is read back from
    disk too, so a first run trains on exactly what later runs will load."""
    if not cache.enabled(cfg):
        return materialise(process(cfg))
    root = cache.cache_root(cfg, data_root(cfg))
    if not cache.writable(root):
        log.warning("cache root %s is not writable: building %r without the cache (set "
                    "data.cache_dir or $WIDEDEEP_CACHE_DIR)", root, cfg.get("name"))
        return materialise(process(cfg))
    return cache.read(*prepare(cfg))
