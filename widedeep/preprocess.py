"""Raw columns -> the feature contract: vocabularies, dense transforms and cross ids.

Everything is fitted on the training split only and saved, so inference applies exactly the
transformation the model was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .features import (
    NUM_RESERVED_IDS,
    OOV_ID,
    PADDING_ID,
    BagField,
    CategoricalField,
    CrossField,
    Schema,
)
from .hashing import bucketize
from .vocab import Vocabulary

DENSE_TRANSFORMS = ("none", "standardize", "log1p_standardize")


@dataclass(frozen=True)
class CrossSpec:
    """``fields`` crossed; exact (a vocabulary of combinations with ``min_count``) or hashed."""

    fields: tuple[str, ...]
    hashed: bool = False
    num_buckets: int = 0
    min_count: int | None = None
    name: str | None = None

    @property
    def column(self) -> str:
        return self.name or "_x_".join(self.fields)


@dataclass(frozen=True)
class FeatureSpec:
    """Which raw columns become which features; built from a dataset config."""

    categorical: tuple[str, ...] = ()
    dense: tuple[str, ...] = ()
    bags: tuple[str, ...] = ()
    crosses: tuple[CrossSpec, ...] = ()
    label: str = "label"
    min_count: int = 1
    min_counts: Mapping[str, int] = field(default_factory=dict)
    dense_transform: str = "standardize"

    def __post_init__(self) -> None:
        if self.dense_transform not in DENSE_TRANSFORMS:
            raise ValueError(
                f"dense_transform {self.dense_transform!r} is not one of {DENSE_TRANSFORMS}"
            )
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        known = set(self.categorical) | set(self.bags)
        for cross in self.crosses:
            unknown = [f for f in cross.fields if f not in self.categorical]
            if unknown or len(cross.fields) < 2:
                raise ValueError(
                    f"cross {list(cross.fields)}: crosses need >= 2 single-valued categorical "
                    f"fields; unknown or not single-valued: {unknown} (categorical: "
                    f"{sorted(known - set(self.bags))})"
                )
            if cross.hashed and cross.num_buckets < 1:
                raise ValueError(f"hashed cross {list(cross.fields)} needs num_buckets >= 1")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> FeatureSpec:
        crosses = []
        for c in cfg.get("crosses") or ():
            c = dict(c) if isinstance(c, Mapping) else {"fields": list(c)}
            crosses.append(CrossSpec(**{**c, "fields": tuple(c["fields"])}))
        return cls(
            categorical=tuple(cfg.get("categorical") or ()),
            dense=tuple(cfg.get("dense") or ()),
            bags=tuple(cfg.get("bags") or ()),
            crosses=tuple(crosses),
            label=cfg.get("label", "label"),
            min_count=int(cfg.get("min_count", 1)),
            min_counts=dict(cfg.get("min_counts") or {}),
            dense_transform=cfg.get("dense_transform", "standardize"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crosses"] = [{**asdict(c), "fields": list(c.fields)} for c in self.crosses]
        d["min_counts"] = dict(self.min_counts)
        return d


class Preprocessor:
    """Fit on training rows, then encode any split (or new rows at inference) the same way.

    Output columns: one Int64 id column per categorical field and cross, one List[Int64] per bag,
    one Float32 per dense field, the Float32 label; named as in the resulting `Schema`.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.vocabs: dict[str, Vocabulary] = {}
        self.dense_stats: dict[str, tuple[float, float]] = {}

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, train: pl.DataFrame) -> Preprocessor:
        spec = self.spec
        self._check_columns(train, "training data")
        for name in spec.categorical:
            self.vocabs[name] = Vocabulary.fit(train[name], spec.min_counts.get(name, spec.min_count))
        for name in spec.bags:
            values = train[name].explode().alias(name)
            self.vocabs[name] = Vocabulary.fit(values, spec.min_counts.get(name, spec.min_count))
        ids = train.select(self._encode_single_exprs())
        for cross in spec.crosses:
            if not cross.hashed:
                key = pl.Series(cross.column, self._cross_key(ids, cross))
                min_count = cross.min_count or spec.min_count
                self.vocabs[cross.column] = Vocabulary.fit(key.filter(key >= 0), min_count)
        transformed = train.select(self._dense_exprs(standardize=False))
        for name in spec.dense:
            col = transformed[name]
            mean, std = col.mean(), col.std()
            if mean is None:
                raise ValueError(f"dense field {name!r} has no non-missing value in training data")
            self.dense_stats[name] = (float(mean), float(std) if std else 1.0)
        return self

    @property
    def schema(self) -> Schema:
        spec = self.spec
        crosses = []
        for c in spec.crosses:
            card = c.num_buckets + NUM_RESERVED_IDS if c.hashed else len(self.vocabs[c.column])
            crosses.append(CrossField(c.column, card, fields=tuple(c.fields), hashed=c.hashed))
        return Schema(
            dense=tuple(spec.dense),
            categorical=tuple(CategoricalField(n, len(self.vocabs[n])) for n in spec.categorical),
            crosses=tuple(crosses),
            bags=tuple(BagField(n, len(self.vocabs[n])) for n in spec.bags),
            label=spec.label,
        )

    # -- encoding ------------------------------------------------------------------------------

    def transform(self, frame: pl.DataFrame, where: str = "data") -> pl.DataFrame:
        """Raw rows -> encoded columns. Unknown categories become id 1 (unseen)."""
        if not self.dense_stats and self.spec.dense:
            raise RuntimeError("Preprocessor.transform called before fit")
        self._check_columns(frame, where)
        spec = self.spec
        out = frame.select(
            *self._encode_single_exprs(),
            *[
                pl.col(n).list.eval(self.vocabs[n].encode(pl.element())).alias(n)
                for n in spec.bags
            ],
            *self._dense_exprs(standardize=True),
            *([pl.col(spec.label).cast(pl.Float32)] if spec.label in frame.columns else []),
        )
        crosses = []
        for cross in spec.crosses:
            key = self._cross_key(out, cross)
            if cross.hashed:
                cols = [out[f].to_numpy() for f in cross.fields]
                ids = bucketize(cols, cross.num_buckets) + NUM_RESERVED_IDS
                ids = np.where(key < 0, PADDING_ID, ids)
                crosses.append(pl.Series(cross.column, ids, dtype=pl.Int64))
            else:
                encoded = pl.select(self.vocabs[cross.column].encode(pl.lit(pl.Series(key))))
                ids = np.where(key < 0, PADDING_ID, encoded.to_series().to_numpy())
                crosses.append(pl.Series(cross.column, ids, dtype=pl.Int64))
        return out.with_columns(crosses) if crosses else out

    def _encode_single_exprs(self) -> list[pl.Expr]:
        return [self.vocabs[n].encode(pl.col(n)).alias(n) for n in self.spec.categorical]

    def _dense_exprs(self, standardize: bool) -> list[pl.Expr]:
        exprs = []
        for name in self.spec.dense:
            x = pl.col(name).cast(pl.Float64)
            if self.spec.dense_transform == "log1p_standardize":
                # Counts: negative values (Criteo's I2 = -1) clip to 0 before the log.
                x = x.clip(lower_bound=0).log1p()
            if standardize:
                if self.spec.dense_transform == "none":
                    x = x.fill_null(0.0)
                else:
                    mean, std = self.dense_stats[name]
                    # Missing -> the training mean, i.e. 0 after standardising.
                    x = ((x - mean) / std).fill_null(0.0)
            exprs.append(x.cast(pl.Float32).alias(name))
        return exprs

    def _cross_key(self, ids: pl.DataFrame, cross: CrossSpec) -> np.ndarray:
        """Combine encoded component ids into one int64 key; -1 where any component is missing.

        Rare components are already id 1, so a cross over them is "rare value x known value":
        kept like any combination, subject to the cross's own min_count.
        """
        key = np.zeros(ids.height, dtype=np.int64)
        missing = np.zeros(ids.height, dtype=bool)
        radix = 1
        for f in reversed(cross.fields):
            col = ids[f].to_numpy()
            card = len(self.vocabs[f])
            key += col * radix
            missing |= col == PADDING_ID
            radix *= card
            if radix >= 2**62:
                raise ValueError(
                    f"exact cross {list(cross.fields)} has too many combinations ({radix:.2e}); "
                    "make it hashed with num_buckets"
                )
        key[missing] = -1
        return key

    def _check_columns(self, frame: pl.DataFrame, where: str) -> None:
        spec = self.spec
        needed = [*spec.categorical, *spec.bags, *spec.dense]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ValueError(f"{where}: missing columns {missing}; has {frame.columns}")

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, vocab in self.vocabs.items():
            vocab.save(directory / f"vocab.{name}.parquet")
        state = {"spec": self.spec.to_dict(), "dense_stats": self.dense_stats}
        (directory / "preprocessor.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Preprocessor:
        path = directory / "preprocessor.json"
        if not path.exists():
            raise FileNotFoundError(f"no saved preprocessing at {path}")
        state = json.loads(path.read_text())
        pre = cls(FeatureSpec.from_config(state["spec"]))
        pre.dense_stats = {k: (v[0], v[1]) for k, v in state["dense_stats"].items()}
        names = [*pre.spec.categorical, *pre.spec.bags]
        names += [c.column for c in pre.spec.crosses if not c.hashed]
        for name in names:
            pre.vocabs[name] = Vocabulary.load(directory / f"vocab.{name}.parquet")
        return pre


def oov_rate(encoded: pl.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Share of rows whose id is 1 (unseen), per column."""
    return {c: float((encoded[c] == OOV_ID).mean() or 0.0) for c in columns}
