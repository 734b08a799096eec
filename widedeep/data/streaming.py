"""Training on data larger than memory: batches streamed from the processed cache's parquet.

The cache (`widedeep.data.cache`) stores a split as ``<entry>/<split>/part-*.parquet``; each file's
row groups are the units read here, with pyarrow, a record batch (``read_rows`` rows) at a
time. Memory per reader is then about one record batch, the shuffle buffer and one batch.

One epoch, with P = world_size x num_workers readers ("consumers", one per DataLoader worker
of every rank) and N rows:

1. every consumer draws the same seeded permutation of the row groups (seed, epoch) and
   lays them end to end: a virtual order of the N rows;
2. consumer c reads rows ``[c N / P, (c + 1) N / P)`` of that order, so the consumers' rows
   are disjoint and cover the split (a row group cut at a boundary is read by both sides,
   each keeping its part);
3. it shuffles them in a bounded buffer (``shuffle_buffer`` rows, seeded by (seed, epoch,
   consumer)) and cuts them into exactly K batches of at most ``batch_size / world_size``
   rows, K being the same for all consumers: DDP needs the same number of steps on every
   rank, or the all-reduce of the rank with one more batch waits forever.

A batch is built by gathering whole column tensors of record batches (`Batch`), never by a
per-row collate.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from widedeep.core.batch import Batch
from widedeep.core.schema import Schema
from widedeep.data import cache
from widedeep.data.columnar import ColumnarData, ProcessedData
from widedeep.data.pipeline import data_root, prepare
from widedeep.data.preprocess import Preprocessor

EVAL_SPLITS = ("valid", "test")


@dataclass(frozen=True)
class RowGroup:
    """One parquet row group: ``rows`` rows starting at split row ``offset``; ``stamp`` is its
    file's (size, mtime, inode) when the stream opened it."""

    path: Path
    index: int
    rows: int
    offset: int
    stamp: tuple[int, int, int]


def file_stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def row_groups(files: Sequence[Path]) -> list[RowGroup]:
    """The row groups of ``files`` in order, from the parquet footers only (no data read)."""
    groups, offset = [], 0
    for path in files:
        stamp = file_stamp(Path(path))
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            rows = meta.row_group(i).num_rows
            if rows:
                groups.append(RowGroup(Path(path), i, rows, offset, stamp))
                offset += rows
    return groups


def check_unchanged(group: RowGroup) -> None:
    """The part file is the one the stream opened (the entry's hashes were checked then):
    rewritten or replaced since, it fails naming the file instead of being read as it is
    now. A stat per row group; the bytes are not hashed again (bounded memory)."""
    why = "size, modification time or inode differ from when the run opened it"
    try:
        changed = file_stamp(group.path) != group.stamp
    except OSError as err:
        changed, why = True, f"{type(err).__name__} {err.strerror}"
    if changed:
        raise cache.CacheDamagedError(
            f"cache file {group.path} changed while the run streamed it ({why}); run again "
            "to check and rebuild the entry"
        )


# -- Batch helpers: concatenate and gather whole columns -----------------------------------------


def concat(parts: Sequence[Batch]) -> Batch:
    """Rows of ``parts`` one after another (bags: values concatenated, offsets shifted)."""
    if len(parts) == 1:
        return parts[0]
    bags = []
    for j in range(len(parts[0].bags)):
        shift, offsets = 0, []
        for p in parts:
            offsets.append(p.bags[j][1] + shift)
            shift += len(p.bags[j][0])
        bags.append((torch.cat([p.bags[j][0] for p in parts]), torch.cat(offsets)))
    return Batch(
        dense=torch.cat([p.dense for p in parts]),
        categorical=torch.cat([p.categorical for p in parts]),
        crosses=torch.cat([p.crosses for p in parts]),
        label=torch.cat([p.label for p in parts]),
        bags=bags,
        row_id=torch.cat([p.row_id for p in parts]),  # type: ignore[misc]
    )


def take(batch: Batch, index: Tensor) -> Batch:
    """Rows ``index`` (k,) of ``batch``, its row ids kept."""
    n = len(batch)
    # Batch bags hold (B,) offsets; ColumnarData's CSR form has the end too (B + 1,).
    bags = [(v, torch.cat([o, torch.tensor([len(v)])])) for v, o in batch.bags]
    columns = ColumnarData(batch.dense, batch.categorical, batch.crosses, batch.label, bags)
    out = columns.take(index, row_id=False)
    out.row_id = (batch.row_id if batch.row_id is not None else torch.arange(n))[index]
    return out


def read_rows(
    group: RowGroup, start: int, stop: int, schema: Schema, columns: list[str], chunk: int
) -> Iterator[Batch]:
    """Rows ``[start, stop)`` of a row group, as Batches of up to ``chunk`` rows."""
    check_unchanged(group)
    pos = 0
    reader = pq.ParquetFile(group.path)
    for record in reader.iter_batches(chunk, row_groups=[group.index], columns=columns):
        lo, hi = max(start, pos), min(stop, pos + record.num_rows)
        if lo < hi:
            frame = pl.from_arrow(record.slice(lo - pos, hi - lo))
            where = f"{group.path} row group {group.index}"
            data = ColumnarData.from_frame(frame, schema, where)  # type: ignore[arg-type]
            batch = data.slice(0, len(data))
            batch.row_id = torch.arange(lo, hi) + group.offset
            yield batch
        pos += record.num_rows
        if pos >= stop:  # the rest of the group belongs to the next consumer
            return


def buffer_shuffle(blocks: Iterator[Batch], capacity: int, gen: torch.Generator) -> Iterator[Batch]:
    """Shuffle within a buffer of about ``capacity`` rows: when full, permute it, emit half of
    it, keep the other half to mix with what comes next. Each row is gathered ~2 times."""
    pool: list[Batch] = []
    size = 0
    for block in blocks:
        pool.append(block)
        size += len(block)
        if size >= capacity:
            merged, perm = concat(pool), torch.randperm(size, generator=gen)
            keep = capacity // 2
            yield take(merged, perm[keep:])
            pool, size = [take(merged, perm[:keep])], keep
    if size:
        yield take(concat(pool), torch.randperm(size, generator=gen))


def batch_sizes(rows: int, steps: int, batch_size: int) -> list[int]:
    """Cut ``rows`` into exactly ``steps`` (>= rows / batch_size) batches of at most
    ``batch_size`` rows: full batches, then shorter ones so that each has a row; a batch only
    goes empty when ``rows < steps`` (possible with batch_size 1)."""
    if rows < steps:
        return [1] * rows + [0] * (steps - rows)
    # Batch j starts at j * batch_size, or later if the batches after it need a row each.
    bounds = [min(j * batch_size, rows - (steps - j)) for j in range(steps)] + [rows]
    return [bounds[j + 1] - bounds[j] for j in range(steps)]


def rebatch(blocks: Iterator[Batch], sizes: list[int]) -> Iterator[Batch]:
    """Batches of exactly ``sizes`` rows from a stream of blocks; an empty size repeats the
    first row (padding, so the batch count stays ``len(sizes)``)."""
    block: Batch | None = None
    pos = 0
    first: Batch | None = None
    for size in sizes:
        parts, need = [], size
        while need:
            if block is None or pos == len(block):
                block, pos = next(blocks), 0
                continue
            n = min(need, len(block) - pos)
            parts.append(take(block, torch.arange(pos, pos + n)))
            pos, need = pos + n, need - n
        if not parts:
            parts = [take(first, torch.arange(1))]  # type: ignore[arg-type]
        out = concat(parts)
        first = out if first is None else first
        yield out


class StreamDataset(IterableDataset):
    """Batches of one split's parquet files, sharded by rank and by DataLoader worker.

    Args:
        files: the split's parquet files, in split row order (row ids count across them).
        schema: the encoded columns to read.
        batch_size: the global batch; each consumer yields ``batch_size / world_size`` rows.
        shuffle_buffer: rows shuffled together; below 2 (or ``shuffle=False``) no shuffling.
        shuffle: permute the row groups and shuffle in the buffer (training).
        seed: with the epoch (`set_epoch`), fixes the order; a resumed run repeats it.
        rank, world_size: this process's shard.
        num_workers: the DataLoader workers per process (0: in the main process).
        chunk: rows per parquet record batch read.
    """

    def __init__(
        self,
        files: Sequence[Path],
        schema: Schema,
        batch_size: int,
        shuffle_buffer: int = 65536,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        chunk: int = 8192,
    ) -> None:
        super().__init__()
        if batch_size % world_size:
            raise ValueError(
                f"data.batch_size={batch_size} (the global batch) must be divisible by the "
                f"number of processes ({world_size})"
            )
        self.groups = row_groups(files)
        self.rows = sum(g.rows for g in self.groups)
        self.consumers = world_size * max(1, num_workers)
        if self.rows < self.consumers:
            raise ValueError(f"{self.rows} rows cannot feed {self.consumers} loader processes")
        self.schema = schema
        self.columns = [schema.label, *schema.dense, *(f.name for f in schema.all_categorical)]
        self.rank_batch = batch_size // world_size
        self.shuffle_buffer, self.shuffle, self.seed = shuffle_buffer, shuffle, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.chunk = chunk
        self.epoch = 0
        self.skip = 0  # batches of this rank's epoch already trained on (a resumed run)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this (as the loader's ``sampler``) before every training epoch."""
        self.epoch = epoch

    @property
    def steps(self) -> int:
        """K, the batches of every consumer: enough for the largest consumer's rows."""
        return math.ceil(math.ceil(self.rows / self.consumers) / self.rank_batch)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (the same on every rank)."""
        return self.steps * max(1, self.num_workers)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.groups)))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.groups), generator=gen).tolist()

    def _span(self, start: int, stop: int) -> Iterator[Batch]:
        """Rows ``[start, stop)`` of this epoch's virtual order, read group by group."""
        pos = 0
        for k in self._order():
            group = self.groups[k]
            lo, hi = max(start, pos), min(stop, pos + group.rows)
            if lo < hi:
                yield from read_rows(
                    group, lo - pos, hi - pos, self.schema, self.columns, self.chunk
                )
            pos += group.rows
            if pos >= stop:
                return

    def consumer_batches(self, consumer: int) -> Iterator[Batch]:
        """The K batches of consumer ``rank * workers + worker`` for the current epoch."""
        start = consumer * self.rows // self.consumers
        stop = (consumer + 1) * self.rows // self.consumers
        blocks = self._span(start, stop)
        if self.shuffle and self.shuffle_buffer >= 2:
            seed = (self.seed * 1_000_003 + self.epoch) * 1_009 + consumer
            gen = torch.Generator().manual_seed(seed)
            blocks = buffer_shuffle(blocks, self.shuffle_buffer, gen)
        batches = rebatch(blocks, batch_sizes(stop - start, self.steps, self.rank_batch))
        # The DataLoader takes batches from its workers in turn, so of the rank's first
        # `skip` batches, worker w made those with index = w (mod workers). Skipped batches
        # are still read: the order after them depends on the buffer's state.
        workers = max(1, self.num_workers)
        drop = (self.skip - consumer % workers + workers - 1) // workers
        for k, batch in enumerate(batches):
            if k >= drop:
                yield batch

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != max(1, self.num_workers):
            raise RuntimeError(
                f"StreamDataset built for {self.num_workers} workers runs in {workers}"
            )
        # The DataLoader asks worker 0 first; after `skip` batches the next one is due from
        # reader skip % workers, so the workers take the readers rotated by that much.
        return self.consumer_batches(self.rank * workers + (worker + self.skip) % workers)


class StreamLoader:
    """A `StreamDataset` behind a DataLoader that passes its Batches through (no collate).

    Like `BatchLoader`, a plain iterable with ``sampler`` (whose ``set_epoch`` Lightning calls),
    ``__len__`` and ``state_dict`` / ``load_state_dict`` (the position in the epoch, which
    Lightning checkpoints, so a run resumed mid-epoch continues that epoch's order); Lightning
    does not touch it otherwise. Workers start each epoch afresh, so they get the dataset with
    its current epoch.
    """

    def __init__(self, stream: StreamDataset, pin_memory: bool = False) -> None:
        # Not named `dataset`: Lightning would take this for a DataLoader of an IterableDataset
        # and warn that its length may be wrong with workers (it is not: see `steps`).
        self.stream = stream
        self.pin_memory = pin_memory  # a GPU run: the DataLoader pins (`Batch.pin_memory`)
        self.sampler = stream
        self.batch_sampler = None
        self._position = (0, 0)  # (epoch, batches yielded in it)
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.stream)

    def __iter__(self) -> Iterator[Batch]:
        epoch, resume, self._resume = self.stream.epoch, self._resume, None
        self.stream.skip = resume[1] if resume is not None and resume[0] == epoch else 0
        self._position = (epoch, self.stream.skip)
        workers = self.stream.num_workers
        context = worker_context() if workers else None
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=workers,
            multiprocessing_context=context,
            pin_memory=self.pin_memory,
        )
        for batch in loader:
            self._position = (epoch, self._position[1] + 1)
            yield batch
        self.stream.skip = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batch"}``: batches of that epoch yielded (the same on every rank)."""
        return {"epoch": self._position[0], "batch": self._position[1]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at ``state``: the next iteration of that epoch skips its first batches."""
        epoch, batch = int(state["epoch"]), int(state["batch"])
        self.stream.set_epoch(epoch)
        self._position = self._resume = (epoch, batch)


def worker_context() -> mp.context.BaseContext:
    """How to start loader workers. Not by forking this process: a fork of a process whose
    polars, pyarrow or OpenMP thread pools have run can deadlock. A fork server is a fresh
    process that imports this module once; each epoch's workers fork from it in milliseconds."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def open_cache(data_cfg: Mapping[str, Any]) -> tuple[list[Path], ProcessedData]:
    """Make sure the dataset's cache entry exists (building it if needed), then load only the
    evaluation splits: (the train split's parquet files, the data without a train split)."""
    cfg = {**data_cfg, "cache": True}  # streaming reads the cache, whatever data.cache says
    root = cache.cache_root(cfg, data_root(cfg))
    if not cache.writable(root) and not root.is_dir():
        raise ValueError(f"trainer.loader=stream needs a writable cache root, not {root}")
    directory, manifest, hit = prepare(cfg)
    schema = Schema.from_dict(manifest["schema"])
    keep = list(manifest["keep_columns"])
    splits, extras = {}, {}
    for split in EVAL_SPLITS:
        frame = cache.read_split(directory, manifest, split)
        splits[split] = ColumnarData.from_frame(frame, schema, f"cache {directory}, {split}")
        extras[split] = frame.select(keep)
    info = {k: manifest[k] for k in ("name", "rows", "click_rate", "bad_rows", "timings_s")}
    info |= {"cache": str(directory), "cache_hit": hit, "loader": "stream"}
    data = ProcessedData(
        schema=schema,
        splits=splits,
        info=info,
        extras=extras,
        preprocessor=Preprocessor.load(directory / "preprocessor"),
    )
    return cache.split_files(directory, "train"), data
