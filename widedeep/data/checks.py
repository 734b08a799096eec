"""The name-like values of a dataset config, checked before any data is read: the dataset,
the split method, the dense transform, the bad-row policy, the keys of each cross (and that the
split ratios add up to 1). Each error names the key and the valid choices
(`widedeep.core.suggest`). And, once the data is built, the fields that hold one value only
and the splits left without rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from widedeep.core.suggest import did_you_mean, unknown_choice
from widedeep.data.columnar import ProcessedData
from widedeep.data.preprocess import DENSE_TRANSFORMS, CrossSpec
from widedeep.data.readers import READERS
from widedeep.data.readers._rows import ON_BAD_ROWS
from widedeep.data.split import check_ratios

SPLIT_METHODS = ("random", "time", "shipped")
# Keys under ``data`` whose value is one of a known set; a key a dataset lacks is skipped.
# A dataset with a choice of its own (e.g. data=table's format) adds a line here.
CHOICES: dict[str, tuple[str, ...]] = {
    "name": tuple(READERS),
    "split.method": SPLIT_METHODS,
    "features.dense_transform": DENSE_TRANSFORMS,
    "on_bad_rows": ON_BAD_ROWS,
}
CROSS_KEYS = tuple(f.name for f in dataclasses.fields(CrossSpec))


def _select(cfg: Mapping[str, Any], dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return dataclasses.MISSING
        value = value[part]
    return value


def check_data_names(cfg: Mapping[str, Any]) -> None:
    """Raise ValueError on the first name-like value of ``cfg`` (the ``data`` node) that no
    reader, split or transform knows."""
    for key, valid in CHOICES.items():
        value = _select(cfg, key)
        if value is not dataclasses.MISSING:
            problem = unknown_choice(f"data.{key}", value, valid)
            if problem:
                raise ValueError(problem)
    ratios = _select(cfg, "split.ratios")
    if isinstance(ratios, Mapping) and _select(cfg, "split.method") in ("random", "time"):
        check_ratios(ratios)
    crosses = _select(cfg, "features.crosses")
    for i, cross in enumerate(() if crosses is dataclasses.MISSING else crosses or ()):
        if not isinstance(cross, Mapping):
            continue  # the short form: a list of fields
        for key in cross:
            if key not in CROSS_KEYS:
                hint = did_you_mean(str(key), CROSS_KEYS)
                raise ValueError(f"data.features.crosses[{i}].{key}: no such key{hint}; "
                                 f"a cross has {', '.join(CROSS_KEYS)}")


def constant_fields(data: ProcessedData) -> list[str]:
    """The categorical and dense fields with one value on every training row (e.g. Avazu's
    hour_of_day on a one-hour file): they cost parameters and carry nothing."""
    train = data.splits.get("train")
    if train is None or len(train) == 0:
        return []
    names = [f.name for f in data.schema.categorical]
    columns = [(n, train.categorical[:, j]) for j, n in enumerate(names)]
    columns += [(n, train.dense[:, j]) for j, n in enumerate(data.schema.dense)]
    return [name for name, values in columns if bool((values == values[0]).all())]


def split_rows(data: ProcessedData) -> dict[str, int]:
    """Rows per split, including those the stream loader keeps on disk only."""
    rows = {s: len(d) for s, d in data.splits.items()}
    # The stream loader keeps no train rows in memory: the cache manifest counted them.
    counted = data.info.get("rows")
    if isinstance(counted, Mapping):
        rows = {**{s: int(n) for s, n in counted.items()}, **{s: n for s, n in rows.items() if n}}
    return rows


def check_train_batches(rows: int, batch_size: int, limit: int | float) -> None:
    """Raise ValueError if ``trainer.limit_train_batches`` leaves no batch to train on: a
    fraction of a few batches rounds down to 0 (Lightning takes ``int(limit * batches)``).
    ``batch_size`` is the global batch, so under DDP each rank has as many batches."""
    batches = -(-rows // batch_size)
    if isinstance(limit, float) and int(limit * batches) < 1:
        least = 1 / batches if batches else 1.0
        raise ValueError(
            f"trainer.limit_train_batches={limit}: {limit} of {batches} training batch(es) "
            f"({rows} rows, data.batch_size={batch_size}) is no batch; use at least "
            f"{least:.3g} or an int number of batches"
        )


def check_split_rows(data: ProcessedData, cfg: Mapping[str, Any]) -> None:
    """Raise ValueError, before any training, if a split has no rows (validation picks the
    best epoch and test scores the run: neither works on nothing), naming what to change."""
    rows = split_rows(data)
    empty = [s for s in ("train", "valid", "test") if not rows.get(s)]
    if not empty:
        return
    split, total = empty[0], sum(rows.values())
    method = _select(cfg, "split.method")
    fixes = []
    if cfg.get("name") == "synthetic":
        fixes.append("more rows (data.generator.n_rows)")
    if method in ("random", "time"):
        fixes.append(f"a larger data.split.ratios.{split}")
    elif split == "valid" and _select(cfg, "split.valid_ratio") is not dataclasses.MISSING:
        fixes.append("a larger data.split.valid_ratio")
    fixes = fixes or [f"more rows in data.files.{split}"]
    raise ValueError(
        f"dataset {cfg.get('name')!r}: split {split!r} has 0 rows (of {total}); training needs "
        f"rows in train, valid and test: use {' or '.join(fixes)}"
    )
