"""What the wide part memorised: a run's largest wide weights, decoded back to raw values.

Per id space of the wide tower (each cross, raw field and bag): how many weights are non-zero,
and the largest positive and negative ones, each named by the raw values it stands for through
the run's saved vocabularies, with how often the training split saw them (the vocabularies'
own counts, fitted on the training split: nothing is re-read). A hashed cross's bucket may hold
several raw combinations and no vocabulary counts it; ``pairs=True`` counts the rows of the
listed buckets, and their most frequent raw combinations, in the run's training split (which
loads the run's data: from the processed-data cache when there is one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from widedeep.core.schema import NUM_RESERVED_IDS, CrossField, Schema
from widedeep.data.preprocess import Preprocessor
from widedeep.experiment.size import space_weights
from widedeep.training.checkpoint import model_from_checkpoint
from widedeep.training.run_files import checkpoint_paths, read_run_yaml

RARE = "<rare or unseen>"
PAIRS_PER_BUCKET = 3
HASHED_NOTE = "a bucket may hold several raw combinations"


@dataclass
class Entry:
    """One weight: its id, value, the raw values it stands for and its training count."""

    id: int
    weight: float
    label: str
    seen: int | None  # training rows (bag occurrences) with this id; None: not counted
    # Hashed crosses with pairs=True: the bucket's most frequent raw combinations (label, rows).
    pairs: list[tuple[str, int]] | None = None


@dataclass
class SpaceReport:
    """One id space: a raw field, a bag or a cross."""

    name: str
    group: str  # fields, crosses or bags
    fields: tuple[str, ...]
    hashed: bool
    weights: np.ndarray = field(repr=False)  # every weight of ids 1.., for the plots
    positive: list[Entry]
    negative: list[Entry]

    @property
    def nonzero(self) -> int:
        return int(np.count_nonzero(self.weights))

    @property
    def title(self) -> str:
        if self.group != "crosses":
            return f"{self.group[:-1]} {self.name}"
        kind = f"hashed into {len(self.weights) - 1:,} buckets" if self.hashed else "exact"
        return f"cross {self.name} = AND({', '.join(self.fields)}), {kind}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "fields": list(self.fields),
            "hashed": self.hashed,
            "weights": len(self.weights),
            "nonzero": self.nonzero,
            "positive": [vars(e) for e in self.positive],
            "negative": [vars(e) for e in self.negative],
        }


@dataclass
class WideReport:
    """A run's wide tower, space by space: crosses first, then raw fields, then bags."""

    run: Path
    kind: str
    bias: float
    spaces: list[SpaceReport]

    @property
    def label(self) -> str:
        return self.kind if self.run.name == self.kind else f"{self.kind} ({self.run.name})"

    def space(self, name: str) -> SpaceReport:
        for s in self.spaces:
            if s.name == name:
                return s
        names = [s.name for s in self.spaces]
        raise ValueError(f"{self.run}: the wide tower has no field or cross {name!r} ({names})")

    def to_dict(self) -> dict[str, Any]:
        return {"run": str(self.run), "kind": self.kind, "bias": self.bias,
                "spaces": [s.to_dict() for s in self.spaces]}

    def format(self) -> str:
        lines = [f"{self.run}: {self.kind}, shared bias {self.bias:+.3f}"]
        for s in self.spaces:
            lines.append(f"{s.title}: {s.nonzero:,} of {len(s.weights):,} weights non-zero")
            if s.hashed:
                more = "" if _has_pairs(s) else " (--pairs: the most frequent ones in train)"
                lines.append(f"  note: {HASHED_NOTE}{more}")
            lines += [_format_entry(e) for e in (*s.positive, *s.negative)]
        return "\n".join(lines)


def _has_pairs(space: SpaceReport) -> bool:
    return any(e.pairs is not None for e in (*space.positive, *space.negative))


def _format_entry(e: Entry) -> str:
    seen = "" if e.seen is None else f" (seen {e.seen:,} times in train)"
    line = f"  {e.label}: {e.weight:+.3f}{seen}"
    if e.pairs:
        line += "\n" + "\n".join(f"      {label} x{rows:,}" for label, rows in e.pairs)
    return line


class Decoder:
    """Ids -> raw values and training counts, through a fitted `Preprocessor`'s vocabularies."""

    def __init__(self, pre: Preprocessor) -> None:
        self.pre = pre
        self.crosses = {c.column: c for c in pre.spec.crosses}

    def _row(self, name: str, id: int) -> tuple[Any, int] | None:
        """(raw value, training count) of a known id of a vocabulary, else None."""
        vocab = self.pre.vocabs.get(name)
        if vocab is None or id < NUM_RESERVED_IDS:
            return None
        value, count = vocab.table.row(id - NUM_RESERVED_IDS)
        return value, int(count)

    def value(self, name: str, id: int) -> str:
        row = self._row(name, id)
        if row is None:
            return RARE
        return f"bin {row[0]}" if name in self.pre.spec.discretize else str(row[0])

    def seen(self, name: str, id: int) -> int | None:
        row = self._row(name, id)
        return None if row is None else row[1]

    def components(self, cross: str, id: int) -> list[int] | None:
        """An exact cross id -> its component field ids (the inverse of the preprocessor's
        mixed-radix key: the last field is the least significant digit); None for id 1."""
        row = self._row(cross, id)
        if row is None:
            return None
        key, ids = int(row[0]), []
        for f in reversed(self.crosses[cross].fields):
            key, digit = divmod(key, len(self.pre.vocabs[f]))
            ids.append(digit)
        return ids[::-1]

    def combination(self, fields: Sequence[str], ids: Sequence[int]) -> str:
        values = ", ".join(f"{f}={self.value(f, i)}" for f, i in zip(fields, ids, strict=True))
        return f"AND({values})"

    def label(self, space: SpaceReport, id: int) -> str:
        if space.group != "crosses":
            return f"{space.name}={self.value(space.name, id)}"
        if space.hashed:
            return f"AND({', '.join(space.fields)}) bucket {id - NUM_RESERVED_IDS}"
        ids = self.components(space.name, id)
        if ids is None:
            return f"AND({', '.join(space.fields)})={RARE}"
        return self.combination(space.fields, ids)


def run_paths(run: str | Path) -> tuple[Path, Path]:
    """(checkpoint, run directory) of a run directory or a checkpoint file in one."""
    return checkpoint_paths(run)


def inspect_wide(
    run: str | Path,
    top: int = 10,
    pairs: bool = False,
    preprocessor: Preprocessor | None = None,
) -> WideReport:
    """The ``top`` largest positive and negative wide weights of every id space of ``run`` (a
    run directory or its checkpoint), decoded to raw values, with the non-zero counts.

    ``preprocessor``: the run's fitted preprocessing (default: ``RUN/preprocessor``).
    ``pairs``: count hashed-cross buckets in the run's training split (loads its data).
    """
    if top < 1:
        raise ValueError(f"top={top}: must be >= 1")
    checkpoint, run_dir = run_paths(run)
    model, hp = model_from_checkpoint(checkpoint)
    if model.wide is None:
        raise ValueError(f"{checkpoint}: a {hp['kind']} model has no wide tower to inspect")
    if preprocessor is None:
        saved = run_dir / "preprocessor"
        if not (saved / "preprocessor.json").is_file():
            raise FileNotFoundError(f"{saved}: no saved preprocessing (vocabularies) in the run")
        preprocessor = Preprocessor.load(saved)
    schema = Schema.from_dict(hp["schema"])
    if preprocessor.schema != schema:
        raise ValueError(f"{run_dir}: the saved preprocessing does not match the checkpoint's "
                         "schema (fields or vocabulary sizes differ)")
    decoder = Decoder(preprocessor)
    spaces = []
    for group, space_field, weights in space_weights(model.wide):
        fields = tuple(getattr(space_field, "fields", ())) or (space_field.name,)
        hashed = isinstance(space_field, CrossField) and space_field.hashed
        report = SpaceReport(space_field.name, group, fields, hashed, weights.numpy(), [], [])
        for sign, entries in ((1.0, report.positive), (-1.0, report.negative)):
            for i in _largest(weights * sign, top):
                id = i + 1  # weights[i] is id i + 1's
                label = decoder.label(report, id)
                seen = None if hashed else decoder.seen(space_field.name, id)
                entries.append(Entry(id, float(weights[i]), label, seen))
        spaces.append(report)
    spaces.sort(key=lambda s: ("crosses", "fields", "bags").index(s.group))
    if pairs and any(s.hashed for s in spaces):
        config = read_run_yaml(run_dir / "config.yaml")
        data_cfg = OmegaConf.to_container(config.data, resolve=True)
        _count_bucket_pairs(spaces, schema, decoder, data_cfg, run_dir)
    return WideReport(run_dir, str(hp["kind"]), float(model.bias.detach()), spaces)


def _largest(values: torch.Tensor, k: int) -> list[int]:
    """Indices of the (at most) ``k`` largest strictly positive ``values``, largest first."""
    top = torch.topk(values, min(k, len(values)))
    return [int(i) for v, i in zip(top.values, top.indices, strict=True) if v > 0]


def _count_bucket_pairs(
    spaces: list[SpaceReport], schema: Schema, decoder: Decoder, data_cfg: dict, run_dir: Path
) -> None:
    """Fill ``seen`` and ``pairs`` of the listed buckets of hashed crosses from the training
    split's encoded rows (the field ids beside the bucket id of every row)."""
    from widedeep.data.pipeline import load_data

    data = load_data(data_cfg)
    if data.schema != schema:
        raise ValueError(f"{run_dir}: its training data no longer encodes to the run's schema")
    train = data.splits["train"]
    columns = {f.name: k for k, f in enumerate(schema.categorical)}
    for c, cross in enumerate(schema.crosses):
        if not cross.hashed:
            continue
        space = next(s for s in spaces if s.name == cross.name)
        entries = {e.id: e for e in (*space.positive, *space.negative)}
        buckets = train.crosses[:, c]
        keep = torch.isin(buckets, torch.tensor(list(entries), dtype=buckets.dtype))
        rows = torch.cat(
            [buckets[keep, None], train.categorical[keep][:, [columns[f] for f in cross.fields]]],
            dim=1,
        )
        combos, counts = torch.unique(rows, dim=0, return_counts=True)
        for id, entry in entries.items():
            mine = combos[:, 0] == id
            order = torch.argsort(counts[mine], descending=True)[:PAIRS_PER_BUCKET]
            entry.seen = int(counts[mine].sum())
            entry.pairs = [
                (decoder.combination(cross.fields, combos[mine][j, 1:].tolist()),
                 int(counts[mine][j]))
                for j in order.tolist()
            ]


def plot_weights(reports: Sequence[WideReport], path: str | Path) -> Path:
    """A PNG of the non-zero wide weights' distribution: one panel per cross, one for all raw
    fields together, one histogram per run (e.g. the joint model against the wide one alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from widedeep.core.io import atomic_write

    if not reports:
        raise ValueError("plot_weights: no run to plot")
    crosses = list(dict.fromkeys(s.name for r in reports for s in r.spaces if s.group == "crosses"))
    fields = any(s.group != "crosses" for r in reports for s in r.spaces)
    panels = [*crosses, *(["raw fields"] if fields else [])]
    if not panels:
        raise ValueError("plot_weights: the runs have no wide weights to plot")
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(5 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        series = {r.label: _panel_weights(r, panel) for r in reports}
        values = np.concatenate([v for v in series.values() if len(v)] or [np.zeros(1)])
        bins = np.linspace(values.min(), values.max(), 61) if np.ptp(values) else 60
        for label, v in series.items():
            if len(v):
                ax.hist(v, bins=bins, histtype="step", label=f"{label}: {len(v):,} non-zero")
        if any(len(v) for v in series.values()):
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        ax.set_title(panel if panel == "raw fields" else f"cross {panel}", fontsize=10)
        ax.set_xlabel("weight (non-zero only)")
    out = Path(path)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return out


def _panel_weights(report: WideReport, panel: str) -> np.ndarray:
    if panel == "raw fields":
        parts = [s.weights for s in report.spaces if s.group != "crosses"]
    else:
        parts = [s.weights for s in report.spaces if s.name == panel]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[values != 0]
