"""Preloaded column tensors and the batches sliced from them.

No per-row ``__getitem__`` and no Python collate: a batch is a handful of ``index_select`` calls
on whole columns, which keeps the input path a small share of a training step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
import torch
from torch import Tensor

from widedeep.core.batch import Batch
from widedeep.core.schema import Schema


@dataclass
class ColumnarData:
    """One split as whole-column tensors (n rows).

    dense (n, N) float32, categorical (n, F) int64, crosses (n, C) int64, label (n,) float32,
    bags: per bag field ``(values (L,), offsets (n + 1,))`` in CSR layout.
    """

    dense: Tensor
    categorical: Tensor
    crosses: Tensor
    label: Tensor
    bags: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, schema: Schema, where: str = "data") -> ColumnarData:
        """Encoded columns (as `Preprocessor.transform` writes them) -> tensors, validated."""
        names = [schema.label, *schema.dense, *(f.name for f in schema.all_categorical)]
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ValueError(f"{where}: missing encoded columns {missing}")
        n = frame.height

        def matrix(cols: list[str], dtype: torch.dtype) -> Tensor:
            if not cols:
                return torch.zeros(n, 0, dtype=dtype)
            return (
                torch.from_numpy(frame.select(cols).to_numpy(writable=True)).to(dtype).contiguous()
            )

        bags = []
        for f in schema.bags:
            lists = frame[f.name]
            lengths = lists.list.len().fill_null(0).to_numpy(writable=True)
            offsets = torch.zeros(n + 1, dtype=torch.long)
            offsets[1:] = torch.from_numpy(lengths).cumsum(0)
            values = torch.from_numpy(lists.explode().drop_nulls().to_numpy(writable=True)).long()
            bags.append((values, offsets))
        data = cls(
            dense=matrix(list(schema.dense), torch.float32),
            categorical=matrix([f.name for f in schema.categorical], torch.long),
            crosses=matrix([f.name for f in schema.crosses], torch.long),
            label=torch.from_numpy(frame[schema.label].to_numpy(writable=True)).float(),
            bags=bags,
        )
        data.validate(schema, where)
        return data

    def validate(self, schema: Schema, where: str = "data") -> None:
        """Fail loudly on what would otherwise train silently wrong."""
        if torch.isnan(self.dense).any() or torch.isinf(self.dense).any():
            bad = torch.nonzero(~torch.isfinite(self.dense))[0].tolist()
            raise ValueError(
                f"{where}: non-finite dense value at row {bad[0]}, field {schema.dense[bad[1]]!r}"
            )
        if not torch.isin(self.label, torch.tensor([0.0, 1.0])).all():
            row = int(torch.nonzero(~torch.isin(self.label, torch.tensor([0.0, 1.0])))[0])
            raise ValueError(f"{where}: label {self.label[row].item()} at row {row} is not 0 or 1")
        for ids, fields in ((self.categorical, schema.categorical), (self.crosses, schema.crosses)):
            if not len(ids) or not fields:
                continue
            # One reduction per matrix, not per column: this runs on every (cached) load.
            low, high = ids.min(0).values, ids.max(0).values
            cards = torch.tensor([f.cardinality for f in fields])
            bad = torch.nonzero((low < 0) | (high >= cards)).flatten().tolist()
            if bad:
                f = fields[bad[0]]
                raise ValueError(f"{where}: field {f.name!r} has ids outside [0, {f.cardinality})")
        for (values, _), f in zip(self.bags, schema.bags, strict=True):
            if len(values) and (values.min() < 0 or values.max() >= f.cardinality):
                raise ValueError(f"{where}: bag {f.name!r} has ids outside [0, {f.cardinality})")

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``[start, stop)`` as views of the columns (no copy, except for bags)."""
        stop = min(stop, len(self))
        if self.bags:
            return self.take(torch.arange(start, stop))
        return Batch(
            dense=self.dense[start:stop],
            categorical=self.categorical[start:stop],
            crosses=self.crosses[start:stop],
            label=self.label[start:stop],
            row_id=torch.arange(start, stop),
        )

    def _gather_bags(self, index: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Bags of rows ``index`` (B,): (values (L',), offsets (B,)), starts only."""
        bags = []
        for values, offsets in self.bags:
            starts, ends = offsets[index], offsets[index + 1]
            lengths = ends - starts
            new_offsets = torch.cumsum(lengths, 0) - lengths  # (B,)
            # Position of every gathered value in `values`, without a Python loop.
            pos = torch.repeat_interleave(starts - new_offsets, lengths)
            pos = pos + torch.arange(int(lengths.sum()))
            bags.append((values[pos], new_offsets))
        return bags

    def take(self, index: Tensor, row_id: bool = True) -> Batch:
        """Gather rows ``index`` (B,) into a `Batch`."""
        return Batch(
            dense=self.dense[index],
            categorical=self.categorical[index],
            crosses=self.crosses[index],
            label=self.label[index],
            bags=self._gather_bags(index),
            row_id=index if row_id else None,
        )

    def subset(self, index: Tensor) -> ColumnarData:
        """Rows ``index`` (k,) as a new split, in that order (copies; bags in CSR again)."""
        bags = [
            (values, torch.cat([offsets, torch.tensor([len(values)])]))
            for values, offsets in self._gather_bags(index)
        ]
        return ColumnarData(
            dense=self.dense[index].contiguous(),
            categorical=self.categorical[index].contiguous(),
            crosses=self.crosses[index].contiguous(),
            label=self.label[index].contiguous(),
            bags=bags,
        )


@dataclass
class ProcessedData:
    """What a dataset builder returns: the schema, split tensors and a description."""

    schema: Schema
    splits: dict[str, ColumnarData]
    info: dict = field(default_factory=dict)
    # Row-aligned columns that are not features (e.g. the synthetic true logit), per split.
    extras: dict[str, pl.DataFrame] = field(default_factory=dict)
    # The fitted `Preprocessor`, to encode new raw rows exactly as the training rows were.
    preprocessor: object | None = None
