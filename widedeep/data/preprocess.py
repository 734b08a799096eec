"""Raw columns -> the feature contract: vocabularies, dense transforms and cross ids.

Everything is fitted on the training split only and saved, so inference applies exactly the
transformation the model was trained on.

Both `Preprocessor.fit` and `Preprocessor.transform` take a polars DataFrame or LazyFrame.
``transform`` is one polars query (vectorised; a LazyFrame stays lazy, so a caller can stream
it batch by batch). ``fit`` reads a LazyFrame in batches of `BATCH_ROWS` rows with the streaming
engine, so memory holds one batch plus the value counts, not the whole training split; exact
crosses take a second pass (their keys need the fitted field vocabularies). Limits: the
vocabulary counts themselves must fit in memory (they grow with the number of distinct values,
not rows), and the source must be re-readable for that second pass (a scan is; a one-shot
stream is not).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from widedeep.core.schema import (
    NUM_RESERVED_IDS,
    OOV_ID,
    PADDING_ID,
    BagField,
    CategoricalField,
    CrossField,
    Schema,
)
from widedeep.data.hashing import bucketize_expr
from widedeep.data.vocab import Vocabulary, count_values, merge_counts

DENSE_TRANSFORMS = ("none", "standardize", "log1p_standardize")
# Rows per batch when fitting on a LazyFrame: large enough for polars' parallelism, small
# enough that a batch of ~40 raw columns stays well under a GB.
BATCH_ROWS = 1_000_000

Frame = pl.DataFrame | pl.LazyFrame


def column_names(frame: Frame) -> list[str]:
    return frame.columns if isinstance(frame, pl.DataFrame) else frame.collect_schema().names()


def iter_batches(frame: Frame, rows: int | None = None) -> Iterator[pl.DataFrame]:
    """A DataFrame as one batch; a LazyFrame streamed in batches of about ``rows`` rows
    (default `BATCH_ROWS`)."""
    if isinstance(frame, pl.DataFrame):
        yield frame
        return
    empty = True
    for batch in frame.collect_batches(chunk_size=rows or BATCH_ROWS, engine="streaming"):
        empty = False
        yield batch
    if empty:  # callers rely on at least one batch for the column types
        yield frame.clear().collect()


def discretize(x: pl.Expr) -> pl.Expr:
    """Criteo's usual integer binning (the 2014 challenge winners'): ``floor(ln(x)^2)`` for
    x > 2, else ``floor(x)`` (so 0, 1, 2 and negative counts keep their own bins); null stays
    null (id 0). It turns a heavy-tailed count into a few dozen ordered-but-independent ids."""
    x = x.cast(pl.Float64)
    return pl.when(x > 2).then(x.log().pow(2)).otherwise(x).floor().cast(pl.Int64)


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
    """Which raw columns become which features; built from a dataset config.

    ``discretize`` lists numeric raw columns that become categorical fields through
    `discretize` (ids from a vocabulary, like any categorical field); a column is one kind of
    feature only, so it may not also be listed in ``dense``, ``categorical`` or ``bags``.
    """

    categorical: tuple[str, ...] = ()
    dense: tuple[str, ...] = ()
    bags: tuple[str, ...] = ()
    crosses: tuple[CrossSpec, ...] = ()
    label: str = "label"
    min_count: int = 1
    min_counts: Mapping[str, int] = field(default_factory=dict)
    dense_transform: str = "standardize"
    discretize: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dense_transform not in DENSE_TRANSFORMS:
            raise ValueError(
                f"dense_transform {self.dense_transform!r} is not one of {DENSE_TRANSFORMS}"
            )
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        kinds = {"categorical": self.categorical, "discretize": self.discretize,
                 "dense": self.dense, "bags": self.bags}
        seen: dict[str, str] = {}
        for kind, names in kinds.items():
            for name in names:
                if name in seen:
                    raise ValueError(
                        f"column {name!r} is listed in both features.{seen[name]} and "
                        f"features.{kind}; a column is one kind of feature"
                    )
                seen[name] = kind
        for cross in self.crosses:
            unknown = [f for f in cross.fields if f not in self.fields]
            if unknown or len(cross.fields) < 2:
                raise ValueError(
                    f"cross {list(cross.fields)}: crosses need >= 2 single-valued categorical "
                    f"fields; unknown or not single-valued: {unknown} (single-valued fields: "
                    f"{list(self.fields)})"
                )
            if cross.hashed and cross.num_buckets < 1:
                raise ValueError(f"hashed cross {list(cross.fields)} needs num_buckets >= 1")

    @property
    def fields(self) -> tuple[str, ...]:
        """Single-valued categorical fields, in schema order: categorical, then discretized."""
        return (*self.categorical, *self.discretize)

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
            discretize=tuple(cfg.get("discretize") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crosses"] = [{**asdict(c), "fields": list(c.fields)} for c in self.crosses]
        d["min_counts"] = dict(self.min_counts)
        return d


class Preprocessor:
    """Fit on training rows, then encode any split (or new rows at inference) the same way.

    Output columns: one Int64 id column per categorical (and discretized) field, one List[Int64]
    per bag, one Float32 per dense field, the Float32 label, any ``passthrough`` columns, one
    Int64 id column per cross; named as in the resulting `Schema`.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.vocabs: dict[str, Vocabulary] = {}
        self.dense_stats: dict[str, tuple[float, float]] = {}

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, train: Frame) -> Preprocessor:
        spec = self.spec
        self._check_columns(train, "training data")
        sources = {n: self._source(n) for n in spec.fields}
        sources |= {n: pl.col(n).explode() for n in spec.bags}
        counts, moments = _scan(train, sources, self._dense_exprs(standardize=False))
        for name, table in counts.items():
            min_count = spec.min_counts.get(name, spec.min_count)
            self.vocabs[name] = Vocabulary.from_counts(table, min_count)
        for name in spec.dense:
            n, mean, m2 = moments[name]
            if n == 0:
                raise ValueError(f"dense field {name!r} has no non-missing value in training data")
            # Sample std (ddof=1); a constant column keeps scale 1 rather than dividing by 0.
            std = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
            self.dense_stats[name] = (mean, std or 1.0)
        exact = [c for c in spec.crosses if not c.hashed]
        if exact:
            # Keys combine encoded component ids, so they need the vocabularies just fitted.
            needed = sorted({f for c in exact for f in c.fields})
            ids = train.lazy().select(self._field_exprs(needed))
            keys = {c.column: self._cross_key(c) for c in exact}
            counts, _ = _scan(ids if isinstance(train, pl.LazyFrame) else ids.collect(), keys, [])
            for c in exact:
                min_count = c.min_count or spec.min_count
                self.vocabs[c.column] = Vocabulary.from_counts(counts[c.column], min_count)
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
            categorical=tuple(CategoricalField(n, len(self.vocabs[n])) for n in spec.fields),
            crosses=tuple(crosses),
            bags=tuple(BagField(n, len(self.vocabs[n])) for n in spec.bags),
            label=spec.label,
        )

    # -- encoding ------------------------------------------------------------------------------

    def transform(
        self, frame: Frame, where: str = "data", passthrough: Sequence[str] = ()
    ) -> Frame:
        """Raw rows -> encoded columns (a DataFrame, or a LazyFrame for a LazyFrame).

        Unknown categories become id 1 (unseen), missing ones 0. ``passthrough`` columns are
        copied unchanged (row-aligned extras such as a split marker or a true logit).
        """
        spec = self.spec
        fitted = len(self.vocabs) + len(self.dense_stats)
        if fitted < len(spec.fields) + len(spec.bags) + len(spec.dense):
            raise RuntimeError("Preprocessor.transform called before fit")
        names = self._check_columns(frame, where)
        clash = [c for c in passthrough if c in self.schema_columns or c not in names]
        if clash:
            raise ValueError(f"{where}: passthrough columns {clash} are missing or name a feature")
        out = frame.lazy().select(
            *self._field_exprs(),
            *[pl.col(n).list.eval(self.vocabs[n].encode(pl.element())).alias(n) for n in spec.bags],
            *self._dense_exprs(standardize=True),
            *([pl.col(spec.label).cast(pl.Float32)] if spec.label in names else []),
            *passthrough,
        )
        out = out.with_columns(self._cross_expr(c) for c in spec.crosses) if spec.crosses else out
        return out.collect() if isinstance(frame, pl.DataFrame) else out

    @property
    def schema_columns(self) -> list[str]:
        """Every column `transform` writes (the label included)."""
        s = self.spec
        return [*s.fields, *s.bags, *s.dense, s.label, *(c.column for c in s.crosses)]

    def _source(self, name: str) -> pl.Expr:
        """The raw value of a single-valued field, before its vocabulary."""
        return discretize(pl.col(name)) if name in self.spec.discretize else pl.col(name)

    def _field_exprs(self, names: Sequence[str] | None = None) -> list[pl.Expr]:
        names = self.spec.fields if names is None else names
        return [self.vocabs[n].encode(self._source(n)).alias(n) for n in names]

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
            # Statistics are fitted in float64; only the encoded output is float32.
            exprs.append((x.cast(pl.Float32) if standardize else x).alias(name))
        return exprs

    def _cross_key(self, cross: CrossSpec) -> pl.Expr:
        """Encoded component ids (columns) -> one Int64 key; null where a component is missing.

        Rare components are already id 1, so a cross over them is "rare value x known value":
        kept like any combination, subject to the cross's own min_count.
        """
        key, radix = pl.lit(0, dtype=pl.Int64), 1
        for f in reversed(cross.fields):
            key = key + pl.col(f) * radix
            radix *= len(self.vocabs[f])
            if radix >= 2**62:
                raise ValueError(
                    f"exact cross {list(cross.fields)} has too many combinations ({radix:.2e}); "
                    "make it hashed with num_buckets"
                )
        missing = pl.any_horizontal(pl.col(f) == PADDING_ID for f in cross.fields)
        return pl.when(missing).then(None).otherwise(key)

    def _cross_expr(self, cross: CrossSpec) -> pl.Expr:
        """Encoded component ids (columns) -> the cross's id; 0 where a component is missing."""
        if not cross.hashed:
            return self.vocabs[cross.column].encode(self._cross_key(cross)).alias(cross.column)
        missing = pl.any_horizontal(pl.col(f) == PADDING_ID for f in cross.fields)
        bucket = bucketize_expr([pl.col(f) for f in cross.fields], cross.num_buckets)
        ids = pl.when(missing).then(PADDING_ID).otherwise(bucket + NUM_RESERVED_IDS)
        return ids.cast(pl.Int64).alias(cross.column)

    def _check_columns(self, frame: Frame, where: str) -> list[str]:
        spec = self.spec
        names = column_names(frame)
        missing = [c for c in (*spec.fields, *spec.bags, *spec.dense) if c not in names]
        if missing:
            raise ValueError(f"{where}: missing columns {missing}; has {names}")
        return names

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
        names = [*pre.spec.fields, *pre.spec.bags]
        names += [c.column for c in pre.spec.crosses if not c.hashed]
        for name in names:
            pre.vocabs[name] = Vocabulary.load(directory / f"vocab.{name}.parquet")
        return pre


Moments = tuple[int, float, float]  # (non-null count, mean, sum of squared deviations)


def _scan(
    frame: Frame, sources: Mapping[str, pl.Expr], dense: Sequence[pl.Expr]
) -> tuple[dict[str, pl.DataFrame], dict[str, Moments]]:
    """One pass over ``frame``: value counts of each source, moments of each dense expression.

    Per batch, every count is one query of a single `collect_all`, so polars runs them in
    parallel; batches are merged as they come (Chan et al.'s pairwise update for the moments).
    """
    counts: dict[str, pl.DataFrame] = {}
    moments: dict[str, Moments] = {}
    for batch in iter_batches(frame):
        lazy = batch.lazy()
        queries = []
        for name, expr in sources.items():
            part = count_values(lazy, expr)
            queries.append(merge_counts(counts[name].lazy(), part) if name in counts else part)
        names = [e.meta.output_name() for e in dense]
        stats = [
            s.alias(f"{k}:{name}")
            for name in names
            for k, s in (("n", pl.col(name).count()), ("mean", pl.col(name).mean()),
                         ("var", pl.col(name).var(ddof=0)))
        ]
        # Transformed once, then reduced (polars would otherwise recompute each transform for
        # each statistic).
        moments_query = lazy.select(dense).select(stats)
        results = pl.collect_all([*queries, *([moments_query] if dense else [])])
        counts.update(zip(sources, results, strict=False))
        if dense:
            row = results[-1].row(0, named=True)
            for name in names:
                n = int(row[f"n:{name}"])
                part = (n, row[f"mean:{name}"] or 0.0, (row[f"var:{name}"] or 0.0) * n)
                moments[name] = _merge_moments(moments.get(name, (0, 0.0, 0.0)), part)
    return counts, moments


def _merge_moments(a: Moments, b: Moments) -> Moments:
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    if n == 0:
        return a
    delta = mb - ma
    return n, ma + delta * nb / n, sa + sb + delta * delta * na * nb / n


def oov_rate(encoded: pl.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """Share of rows whose id is 1 (unseen), per column."""
    return {c: float((encoded[c] == OOV_ID).mean() or 0.0) for c in columns}
