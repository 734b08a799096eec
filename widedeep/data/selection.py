"""The held-out selection split: the validation rows cut into A ("valid") and B ("valid_b").

A joint-vs-ensemble comparison chooses among ensembles and fits stackers or refits on validation
rows. If those are the rows early stopping already used, the choice is made on rows every arm
was tuned to, and its validation score is optimistic. With ``data.selection`` on, A keeps every
role of "valid" (early stopping, the monitored metric, tuning) and B is only scored after
training, for the harness to select and stack on rows no training decision has seen.

Applied after loading, to a `ProcessedData` from the cache, the uncached build or the streaming
loader alike, so it changes neither the processed data nor its cache key
(``cache.NOT_IN_KEY``), nor the train and test rows. The split is numpy's seeded Generator over
each class's row positions: the same (ratio, seed) gives the same rows on any machine and with
any polars version (polars' hashing is not stable across versions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from widedeep.data.columnar import ProcessedData

SELECTION_SPLIT = "valid_b"
KEYS = ("ratio", "seed")


@dataclass(frozen=True)
class Selection:
    """``ratio``: the share of the validation rows (per class) moved to B; ``seed``: numpy's."""

    ratio: float
    seed: int = 0

    @classmethod
    def from_config(cls, value: Mapping[str, Any] | None) -> Selection | None:
        """``data.selection`` (null or ``{ratio, seed}``) -> a Selection or None, validated."""
        if value is None:
            return None
        if not isinstance(value, Mapping) or set(value) - set(KEYS) or "ratio" not in value:
            raise ValueError(f"data.selection={value!r}: expected null or {{ratio: 0.5, seed: 0}}")
        ratio, seed = value["ratio"], value.get("seed", 0)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise ValueError(f"data.selection.ratio={ratio!r}: must be a number in (0, 1)")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"data.selection.seed={seed!r}: must be an int >= 0")
        return cls(float(ratio), seed)


def selection_mask(label: np.ndarray, ratio: float, seed: int = 0) -> np.ndarray:
    """Which validation rows go to B: bool (n,), stratified by ``label`` (n,) in {0, 1}.

    Per class, ``round(ratio * n_class)`` rows drawn without replacement by
    ``np.random.default_rng(seed)``, so each class's share of B is within half a row of
    ``ratio``. Raises `ValueError` naming ``data.selection.ratio`` unless both parts keep rows
    of both classes.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(label), dtype=bool)
    counts = {}
    for cls in (0, 1):
        rows = np.flatnonzero(label == cls)
        take = int(np.floor(ratio * len(rows) + 0.5))
        mask[rng.permutation(rows)[:take]] = True
        counts[cls] = (len(rows) - take, take)  # (in A, in B)
    empty = [
        f"{part} has no {name}"
        for cls, name in ((1, "positives"), (0, "negatives"))
        for part, n in zip(("valid", SELECTION_SPLIT), counts[cls], strict=True)
        if n == 0
    ]
    if empty:
        raise ValueError(
            f"data.selection.ratio={ratio}: {' and '.join(empty)} (the {len(label)} validation "
            f"rows have {counts[1][0] + counts[1][1]} positives, "
            f"{counts[0][0] + counts[0][1]} negatives); both parts need both classes"
        )
    return mask


def select_validation(data: ProcessedData, selection: Selection | None) -> ProcessedData:
    """``data`` with "valid" = A and "valid_b" = B (extras split alike, row order kept);
    ``data`` itself when ``selection`` is None. Train and test are the same objects."""
    if selection is None:
        return data
    if SELECTION_SPLIT in data.splits:
        raise ValueError(f"data.selection: the data already has a {SELECTION_SPLIT!r} split")
    valid = data.splits["valid"]
    to_b = selection_mask(valid.label.numpy(), selection.ratio, selection.seed)
    parts = {"valid": np.flatnonzero(~to_b), SELECTION_SPLIT: np.flatnonzero(to_b)}
    splits, extras = {}, {}
    for name, split in data.splits.items():
        if name != "valid":
            splits[name] = split
            continue
        for part, rows in parts.items():  # in place of "valid": train, valid, valid_b, test
            splits[part] = split.subset(torch.from_numpy(rows))
    for name, frame in data.extras.items():
        if name != "valid":
            extras[name] = frame
            continue
        for part, rows in parts.items():
            # A frame without columns has no rows in polars: keep it as it is.
            extras[part] = frame[pl.Series(rows)] if frame.width else frame
    rows = {k: len(v) for k, v in splits.items()}
    info = dict(data.info)
    info["rows"] = {**info.get("rows", {}), **rows}
    info["click_rate"] = {
        **info.get("click_rate", {}),
        **{k: float(splits[k].label.double().mean()) for k in parts},
    }
    info["selection"] = {
        "ratio": selection.ratio,
        "seed": selection.seed,
        "rows": {k: rows[k] for k in parts},
    }
    return ProcessedData(
        schema=data.schema,
        splits=splits,
        info=info,
        extras=extras,
        preprocessor=data.preprocessor,
    )
