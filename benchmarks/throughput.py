"""Training and inference throughput: widedeep vs. a hand-written loop and two peer libraries.

    python benchmarks/throughput.py                    # widedeep + hand-written rows, 1M rows
    python benchmarks/throughput.py --peers            # + pytorch-widedeep and deepctr-torch
    python benchmarks/throughput.py --rows 50000 --rows-only widedeep-adam,handwritten-adam

Every system trains the same model on the same generated Criteo-shaped data (13 dense fields,
26 categorical fields with Zipf-distributed ids): 16-dim embeddings + dense -> MLP 400-400-400
-> 1 logit, plus a linear "wide" part over the one-hot ids; batch 4096, one epoch.

The parent process generates the data once (seeded numpy) into .npy files, then runs each row
in its own subprocess with `torch.set_num_threads(--threads)`, so that peak RSS and the time to
the first step belong to one system. With --interleave the rows' processes take turns (one
running at a time, the others stopped) and each is timed only while it ran, so that this
machine's drift falls on every row alike (THROUGHPUT.md, "Noise"). The peers run in their own
venv (benchmarks/.work/peers-venv, made on first use from benchmarks/requirements-peers.txt),
never in widedeep's.

Results: a markdown table on stdout and in <out>/throughput.md, raw numbers in
<out>/throughput.json. This module imports only the standard library and numpy at the top:
the same file is the worker in both venvs, and each row imports its own framework.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import itertools
import json
import math
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# -- the model every system trains (issue 4, section 5) ------------------------------------------

NUM_DENSE = 13
# Values per categorical field (reserved ids excluded): 10 to 100,000, about 1.08M ids in all.
VALUES = (
    [10, 12, 15, 20, 30, 50, 100, 200, 500, 1_000, 2_000, 5_000]
    + [10_000, 20_000, 30_000, 50_000, 70_000, 90_000]
    + [100_000] * 8
)
RESERVED = 2  # widedeep's ids 0 (missing) and 1 (unseen); data ids start at 2 in every system
EMBED_DIM = 16
HIDDEN = (400, 400, 400)
LR = 1e-3
CLICK_RATE = 0.25
ZIPF_EXPONENT = 1.05


def mlp_flops_per_sample(train: bool) -> float:
    """Multiply-adds of the MLP's matmuls x2; training adds the two backward matmuls (x3)."""
    widths = [len(VALUES) * EMBED_DIM + NUM_DENSE, *HIDDEN, 1]
    forward = 2.0 * sum(a * b for a, b in itertools.pairwise(widths))
    return 3 * forward if train else forward


# -- rows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: a system and the configuration it runs."""

    name: str
    system: str  # widedeep | hand-written | pytorch-widedeep | deepctr-torch
    optimizer: str  # what the table says
    reference: str | None = None  # the hand-written row with the same optimizer
    overrides: tuple[str, ...] = ()  # widedeep: Hydra overrides of widedeep-train's config
    sparse: bool = False  # hand-written: sparse embedding gradients
    fused: bool = False  # hand-written: Adam(fused=True) for the dense parameters
    compile: bool = False  # torch.compile; the last partial batch is dropped
    default: bool = True  # in the run without --rows-only

    @property
    def peer(self) -> bool:
        return self.system in ("pytorch-widedeep", "deepctr-torch")


# widedeep-train's own config (Hydra overrides), reshaped to the benchmark's model.
WIDEDEEP_BASE = (
    "model=wide_deep",
    f"model.deep.embedding_dim={EMBED_DIM}",
    f"model.deep.hidden=[{','.join(map(str, HIDDEN))}]",
    "model.deep.dropout=0.0",
    "model.wide.use_dense=false",
)
ADAM = ("optim=adam", f"optim.wide.lr={LR}", f"optim.deep.lr={LR}")
FUSED = ("+optim.wide.fused=true", "+optim.deep.fused=true")
SPARSE_TABLES = ("model.wide.sparse_min_rows=0", "model.deep.sparse_min_rows=0")
# SparseAdam for the tables; the towers' dense parameters get fused Adam, as in handwritten-sparse.
SPARSE_ADAM = (
    *ADAM,
    *FUSED,
    *SPARSE_TABLES,
    "optim.wide.name=sparse_adam",
    "optim.deep.name=sparse_adam",
)

ROWS: tuple[RowSpec, ...] = (
    RowSpec("handwritten-adam", "hand-written", "Adam"),
    RowSpec("handwritten-adam-fused", "hand-written", "Adam(fused)", fused=True),
    RowSpec(
        "handwritten-sparse", "hand-written", "SparseAdam + Adam(fused)", sparse=True, fused=True
    ),
    RowSpec(
        "handwritten-sparse-compile",
        "hand-written",
        "SparseAdam + Adam(fused), compiled",
        sparse=True,
        fused=True,
        compile=True,
    ),
    RowSpec("widedeep-adam", "widedeep", "Adam", "handwritten-adam", overrides=ADAM),
    RowSpec(
        "widedeep-adam-fused",
        "widedeep",
        "Adam(fused)",
        "handwritten-adam-fused",
        overrides=(*ADAM, *FUSED),
    ),
    RowSpec(
        "widedeep-sparse",
        "widedeep",
        "SparseAdam + Adam(fused)",
        "handwritten-sparse",
        overrides=SPARSE_ADAM,
    ),
    RowSpec(
        "widedeep-sparse-compile",
        "widedeep",
        "SparseAdam + Adam(fused), compiled",
        "handwritten-sparse-compile",
        overrides=SPARSE_ADAM,
        compile=True,
        default=False,
    ),
    RowSpec(
        "widedeep-sparse-ftrl",
        "widedeep",
        "FTRL (wide) + SparseAdam + Adam(fused) (deep)",
        overrides=(
            *ADAM,
            "+optim.deep.fused=true",  # FTRL takes no fused option
            *SPARSE_TABLES,
            "optim.wide.name=ftrl",
            "optim.wide.lr=0.05",
            "optim.deep.name=sparse_adam",
        ),
        default=False,
    ),
    RowSpec(
        "widedeep-paper-sparse",
        "widedeep",
        "FTRL (wide) + Adagrad (deep)",
        overrides=("optim=paper", *SPARSE_TABLES),  # the paper's own learning rates
        default=False,
    ),
    RowSpec("pytorch-widedeep", "pytorch-widedeep", "Adam", "handwritten-adam"),
    RowSpec("deepctr-torch", "deepctr-torch", "Adam", "handwritten-adam"),
)
ROW_BY_NAME = {r.name: r for r in ROWS}
PEER_MODULES = {"pytorch-widedeep": "pytorch_widedeep_row", "deepctr-torch": "deepctr_row"}


@dataclass(frozen=True)
class Settings:
    """What every worker needs besides the data; passed on the command line as JSON."""

    batch_size: int = 4096
    eval_batch_size: int = 8192
    threads: int = 2
    warmup: int = 10
    steps: int | None = None  # at most this many training steps (the smoke test)
    infer_rows: int | None = None  # rows scored in the inference pass (None: all)
    infer_passes: int = 3  # inference passes; the median one is reported
    system_malloc: bool = False  # widedeep and hand-written rows without keep_freed_memory
    peer_workers: int | None = None  # pytorch-widedeep's DataLoader workers (None: its default)
    seed: int = 0
    lr: float = LR
    embed_dim: int = EMBED_DIM
    hidden: tuple[int, ...] = HIDDEN


# -- data ----------------------------------------------------------------------------------------


def zipf_ids(rng: np.random.Generator, values: int, rows: int) -> np.ndarray:
    """Ids 2 .. values + 1 with P(rank k) ~ k^-s: id 2 is the most frequent value, as a
    frequency-sorted vocabulary numbers them."""
    weights = np.arange(1, values + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    ranks = np.searchsorted(cdf, rng.random(rows) * cdf[-1])
    return np.minimum(ranks, values - 1).astype(np.int64) + RESERVED


def calibrated_bias(logit: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean click probability ``rate`` (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) > rate:
            high = mid
        else:
            low = mid
    return (low + high) / 2


def generate(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Criteo-shaped rows: standardized log counts, Zipf ids, labels from a planted logit."""
    rng = np.random.default_rng(seed)
    counts = np.floor(
        rng.lognormal(mean=rng.uniform(0, 3, NUM_DENSE), sigma=1.2, size=(rows, NUM_DENSE))
    )
    dense = np.log1p(counts)
    dense = ((dense - dense.mean(0)) / (dense.std(0) + 1e-6)).astype(np.float32)
    categorical = np.stack([zipf_ids(rng, v, rows) for v in VALUES], axis=1)
    # A learnable signal: per-id effects in a third of the fields, and the dense features.
    logit = dense @ rng.normal(0, 0.3, NUM_DENSE)
    for j in range(0, len(VALUES), 3):
        effects = rng.normal(0, 0.7, VALUES[j] + RESERVED)
        logit += effects[categorical[:, j]]
    logit += calibrated_bias(logit, CLICK_RATE)
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {"dense": dense, "categorical": categorical, "label": label}


def save_data(data: dict[str, np.ndarray], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in data.items():
        np.save(folder / f"{name}.npy", array)


def load_data(folder: Path) -> dict[str, np.ndarray]:
    return {name: np.load(folder / f"{name}.npy") for name in ("dense", "categorical", "label")}


def cardinalities() -> list[int]:
    """Ids per field including the reserved ones: every system's table sizes."""
    return [v + RESERVED for v in VALUES]


# -- measuring inside a worker -------------------------------------------------------------------


Interval = tuple[float, float]


def active_seconds(start: float, end: float, running: Sequence[Interval] | None) -> float:
    """Seconds of [start, end] (``time.monotonic``, the same clock in every process) during
    which the row's process ran: all of it, or its overlap with ``running`` when the parent
    interleaved the rows (``--interleave``) and stopped this one in between."""
    if running is None:
        return end - start
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in running)


@dataclass
class StepClock:
    """``time.monotonic()`` at the end of every training step, and optionally the time spent
    inside forward, backward and the optimizer step(s) of that step.

    Steady state: the steps after ``warmup`` (first-step allocation, lazy optimizer state and
    compilation land there), timed from the end of the last warm-up step, so that everything
    between two steps (the data slicing, the framework's loop) counts. The worker records; the
    parent summarizes, since only it knows when it stopped the process (``--interleave``).
    """

    launched: float  # time.monotonic() when the parent started this process
    batch_size: int
    rows: int
    warmup: int
    ends: list[float] = field(default_factory=list)
    inside: list[tuple[float, float, float] | None] = field(default_factory=list)
    first_step_at: float | None = None

    def step_done(self, inside: tuple[float, float, float] | None = None) -> None:
        self.ends.append(time.monotonic())
        self.inside.append(inside)
        if self.first_step_at is None:
            self.first_step_at = self.ends[-1]

    def size(self, step: int) -> int:
        return max(0, min(self.batch_size, self.rows - step * self.batch_size))

    def summary(self, running: Sequence[Interval] | None = None) -> dict[str, Any]:
        """Steady samples/s over the time the process ran; a step the parent paused the
        process in is counted by its running time, and left out of the per-step figures."""
        steps = len(self.ends)
        if steps < 2:
            raise RuntimeError(f"only {steps} training step(s): too few to time")
        warmup = max(1, min(self.warmup, steps // 3))
        ends = self.ends[warmup - 1 :]
        wall = np.diff(ends)
        ran = np.array([active_seconds(a, b, running) for a, b in itertools.pairwise(ends)])
        whole = ran >= wall - 1e-4  # steps not cut by a pause
        samples = sum(self.size(k) for k in range(warmup, steps))
        out: dict[str, Any] = {
            "steps": steps,
            "warmup_steps": warmup,
            "steady_steps": steps - warmup,
            "steady_samples": samples,
            "steady_seconds": float(ran.sum()),
            "samples_per_s": samples / float(ran.sum()),
            "paused_steps": int((~whole).sum()),
            # Robust to a burst of other load within the run: the median steady step.
            "median_step_ms": float(np.median(wall[whole])) * 1e3,
            "time_to_first_step_s": active_seconds(
                self.launched, self.first_step_at or self.launched, running
            ),
        }
        breakdown = self._breakdown(warmup, wall, whole)
        if breakdown:
            out["breakdown_ms_per_step"] = breakdown
        return out

    def _breakdown(
        self, warmup: int, wall: np.ndarray, whole: np.ndarray
    ) -> dict[str, float] | None:
        """Mean ms per steady, unpaused step in forward, backward, optimizer step and the rest."""
        parts = self.inside[warmup:]
        if not parts or any(p is None for p in parts) or not whole.any():
            return None
        totals = wall[whole] * 1e3
        inside = np.asarray(parts, dtype=np.float64)[whole] * 1e3  # (steps, 3)
        outside = totals - inside.sum(1)
        return {
            "total": float(totals.mean()),
            "forward": float(inside[:, 0].mean()),
            "backward": float(inside[:, 1].mean()),
            "optimizer": float(inside[:, 2].mean()),
            "outside": float(outside.mean()),
            "outside_share": float(outside.sum() / totals.sum()),
        }


def time_inference(
    predict: Callable[[int], None], rows: int, eval_batch: int, passes: int
) -> dict[str, Any]:
    """``passes`` passes over ``rows`` rows after one warm-up batch: each pass's start and end
    (monotonic) and its page faults per batch."""
    predict(min(rows, eval_batch))
    out: list[dict[str, float]] = []
    for _ in range(passes):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.monotonic()
        predict(rows)
        end = time.monotonic()
        # Fresh memory for every batch's activations (an allocator handing pages back to the
        # kernel after each batch) costs as much as a layer's matmul here: worth seeing.
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        out.append({"start": start, "end": end, "faults_per_batch": faults * eval_batch / rows})
    return {"rows": rows, "passes": out}


def inference_summary(raw: dict[str, Any], running: Sequence[Interval] | None) -> dict[str, Any]:
    """Samples/s of the median pass, counting only the time the process ran."""
    rates = [raw["rows"] / active_seconds(p["start"], p["end"], running) for p in raw["passes"]]
    return {**raw, "pass_samples_per_s": rates, "samples_per_s": float(np.median(rates))}


def peak_rss_mib() -> float:
    """Peak resident set of this process, or of a child it waited for (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB


# -- widedeep rows -------------------------------------------------------------------------------


def widedeep_config(spec: RowSpec) -> Any:
    """The config ``widedeep-train`` would run with these overrides, validated like it."""
    from widedeep.cli.config import compose_config
    from widedeep.training.run import validate

    cfg = compose_config([*WIDEDEEP_BASE, *spec.overrides])
    validate(cfg)
    return cfg


def lightning_timer(clock: StepClock) -> Any:
    """A Lightning callback that feeds ``clock``: the end of every batch, and the time inside
    the module's forward, the backward and every optimizer's step (torch hooks), so that the
    rest of a step (data, loss, logging, Lightning's loop) is what remains."""
    import pytorch_lightning as pl

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.parts = [0.0, 0.0, 0.0]
            self.started = [0.0, 0.0, 0.0]

        def _start(self, k: int) -> None:
            self.started[k] = time.perf_counter()

        def _stop(self, k: int) -> None:
            self.parts[k] += time.perf_counter() - self.started[k]

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            pl_module.register_forward_pre_hook(lambda *_: self._start(0))
            pl_module.register_forward_hook(lambda *_: self._stop(0))
            for opt in trainer.optimizers:
                opt.register_step_pre_hook(lambda *_: self._start(2))
                opt.register_step_post_hook(lambda *_: self._stop(2))

        def on_before_backward(self, *_: Any) -> None:
            self._start(1)

        def on_after_backward(self, *_: Any) -> None:
            self._stop(1)

        def on_train_batch_end(self, *_: Any) -> None:
            clock.step_done((self.parts[0], self.parts[1], self.parts[2]))
            self.parts = [0.0, 0.0, 0.0]

    return Timer()


def run_widedeep(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """widedeep's WideDeepModule under a Lightning Trainer, fed by its BatchLoader."""
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from widedeep import BatchLoader, CategoricalField, ColumnarData, Schema, keep_freed_memory
    from widedeep.training.module import WideDeepModule
    from widedeep.training.predict import predict_split

    keep_freed_memory()  # as widedeep-train and widedeep-predict do at start

    cfg = widedeep_config(spec)
    schema = Schema(
        dense=tuple(f"I{j + 1}" for j in range(NUM_DENSE)),
        categorical=tuple(
            CategoricalField(f"C{j + 1}", card) for j, card in enumerate(cardinalities())
        ),
    )

    def columns(rows: int) -> ColumnarData:
        return ColumnarData(
            dense=torch.from_numpy(data["dense"][:rows]),
            categorical=torch.from_numpy(data["categorical"][:rows]),
            crosses=torch.zeros(rows, 0, dtype=torch.long),
            label=torch.from_numpy(data["label"][:rows]),
        )

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    pl.seed_everything(s.seed, verbose=False)
    module = WideDeepModule(
        schema=schema.to_dict(),
        kind=model_cfg["kind"],
        wide=model_cfg["wide"],
        deep=model_cfg["deep"],
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
    )
    train_rows = clock.rows
    loader = BatchLoader(
        columns(train_rows), s.batch_size, shuffle=True, seed=s.seed, drop_last=spec.compile
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lightning_timer(clock)],
    )
    if spec.compile:
        # Not a widedeep option: what one would give. The MLP only, in place (state_dict keys
        # unchanged): `torch.compile(module)` under Lightning traces training_step and fails in
        # self.log, and compiling the whole model breaks the graph at the sparse embedding
        # backward with padding_idx (aten.nonzero) for no gain.
        module.model.deep.mlp.compile(dynamic=False)
    trainer.fit(module, train_dataloaders=loader)
    rows = s.infer_rows or len(data["label"])
    full = columns(rows)

    def predict(n: int) -> None:
        # Inference runs eager in every row: a compiled MLP would recompile for the eval batch
        # sizes inside the timed pass.
        with torch.compiler.set_stance("force_eager"):
            predict_split(module.model, full if n == rows else columns(n), s.eval_batch_size)

    inference = time_inference(predict, rows, s.eval_batch_size, s.infer_passes)
    params = sum(p.numel() for p in module.model.parameters())
    return inference, params


# -- the hand-written loop -----------------------------------------------------------------------


def plain_model(sparse: bool) -> torch.nn.Module:
    """Wide & Deep in plain PyTorch, independent of widedeep, with its parameter count: one
    table for all fields (row = field offset + id, row 0 unused), a (rows, 1) table summed by
    EmbeddingBag for the wide part, the MLP without output bias, and one shared bias."""
    import torch
    from torch import nn

    cards = cardinalities()

    class PlainWideDeep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            offsets = np.concatenate([[0], np.cumsum(np.asarray(cards) - 1)[:-1]])
            self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
            rows = 1 + sum(c - 1 for c in cards)
            self.embedding = nn.Embedding(rows, EMBED_DIM, sparse=sparse)
            self.wide = nn.EmbeddingBag(rows, 1, mode="sum", sparse=sparse)
            nn.init.normal_(self.embedding.weight, std=0.01)
            nn.init.zeros_(self.wide.weight)
            layers: list[nn.Module] = []
            width = len(cards) * EMBED_DIM + NUM_DENSE
            for hidden in HIDDEN:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            layers.append(nn.Linear(width, 1, bias=False))
            self.mlp = nn.Sequential(*layers)
            self.bias = nn.Parameter(torch.zeros(1))

        def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
            rows = ids + self.offsets  # (B, F); data ids are >= 2, so no missing-id case
            deep_in = torch.cat([self.embedding(rows).flatten(1), dense], dim=1)
            return self.mlp(deep_in).squeeze(1) + self.wide(rows).squeeze(1) + self.bias

    return PlainWideDeep()


def plain_optimizers(model: torch.nn.Module, spec: RowSpec) -> list[torch.optim.Optimizer]:
    import torch

    if not spec.sparse:
        return [torch.optim.Adam(model.parameters(), lr=LR, fused=spec.fused or None)]
    tables = [model.embedding.weight, model.wide.weight]
    ids = {id(p) for p in tables}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [
        torch.optim.SparseAdam(tables, lr=LR),
        torch.optim.Adam(rest, lr=LR, fused=spec.fused or None),
    ]


def run_handwritten(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """The practical ceiling: preloaded tensors, a permutation, slices, forward/backward/step."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(s.seed)
    model = plain_model(spec.sparse)
    optimizers = plain_optimizers(model, spec)
    forward = torch.compile(model) if spec.compile else model
    ids = torch.from_numpy(data["categorical"])
    dense = torch.from_numpy(data["dense"])
    label = torch.from_numpy(data["label"])
    order = torch.randperm(clock.rows, generator=torch.Generator().manual_seed(s.seed))
    # A compiled model would recompile for the last, smaller batch: drop it.
    steps = (clock.rows // s.batch_size) if spec.compile else math.ceil(clock.rows / s.batch_size)
    for k in range(steps):
        index = order[k * s.batch_size : (k + 1) * s.batch_size]
        x_ids, x_dense, y = ids[index], dense[index], label[index]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(forward(x_ids, x_dense), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        for opt in optimizers:
            opt.step()
        clock.step_done((t1 - t0, t2 - t1, time.perf_counter() - t2))

    model.eval()

    @torch.inference_mode()
    def predict(rows: int) -> None:
        for start in range(0, rows, s.eval_batch_size):
            part = slice(start, min(rows, start + s.eval_batch_size))
            torch.sigmoid(model(ids[part], dense[part]))

    rows = s.infer_rows or len(label)
    params = sum(p.numel() for p in model.parameters())
    return time_inference(predict, rows, s.eval_batch_size, s.infer_passes), params


# -- the peers -----------------------------------------------------------------------------------


def run_peer(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """pytorch-widedeep or deepctr-torch through its own training loop (benchmarks/_peers)."""
    module = importlib.import_module(f"_peers.{PEER_MODULES[spec.system]}")
    row = module.Row(data, cardinalities(), asdict(s))
    row.train(clock.rows, clock.step_done)
    rows = s.infer_rows or len(data["label"])
    return time_inference(row.predict, rows, s.eval_batch_size, s.infer_passes), row.num_params


RUNNERS = {"widedeep": run_widedeep, "hand-written": run_handwritten}


def worker(spec: RowSpec, data_dir: Path, s: Settings, launched: float) -> dict[str, Any]:
    """One row, in this process: train one epoch (or --steps), then one inference pass."""
    import torch

    torch.set_num_threads(s.threads)
    data = load_data(data_dir)
    rows = len(data["label"])
    if s.steps:
        rows = min(rows, s.steps * s.batch_size)
    clock = StepClock(launched, s.batch_size, rows, s.warmup)
    run = RUNNERS.get(spec.system, run_peer)
    inference, params = run(spec, data, s, clock)
    return {
        "row": spec.name,
        "system": spec.system,
        "optimizer": spec.optimizer,
        "reference": spec.reference,
        "train_rows": rows,
        "params": params,
        "clock": asdict(clock),  # summarized by the parent (see StepClock)
        "inference_raw": inference,
        "peak_rss_mib": peak_rss_mib(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.executable,
    }


# -- the peers' venv -----------------------------------------------------------------------------

REQUIREMENTS = HERE / "requirements-peers.txt"
TORCH_PIN = "torch==2.13.0"  # the CPU wheel; installed first and alone (see the requirements)


def peers_python(work: Path, log: Path) -> Path:
    """The peers' interpreter, installing their venv first if it is missing or out of date."""
    venv = work / "peers-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    with log.open("a") as out:

        def step(*cmd: str | Path) -> None:
            out.write(f"$ {shlex.join(map(str, cmd))}\n")
            out.flush()
            subprocess.run(list(map(str, cmd)), stdout=out, stderr=out, check=True)

        print(f"throughput: installing the peers' venv in {venv} (log: {log})", file=sys.stderr)
        step(sys.executable, "-m", "venv", venv)
        step(python, "-m", "pip", "install", "--quiet", TORCH_PIN)
        step(python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS)
        for module in PEER_MODULES.values():  # both import, shims included
            step(
                python,
                "-c",
                f"import sys; sys.path.insert(0, {str(HERE)!r}); "
                f"import _peers.{module} as m; print(m.load())",
            )
    stamp.write_text(want)
    return python


# -- the parent ----------------------------------------------------------------------------------


def matmul_gflops(threads: int, seconds: float = 1.0) -> float:
    """fp32 GEMM rate at the MLP's shape (batch 4096, 400 x 400): the ceiling's denominator."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(4096, HIDDEN[0]), torch.randn(HIDDEN[0], HIDDEN[1])
    best = 0.0
    for _ in range(3):
        for _ in range(3):
            a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        rate = 2 * a.shape[0] * a.shape[1] * b.shape[1] * reps / (time.perf_counter() - start)
        best = max(best, rate / 1e9)
    return best


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Launched:
    """A row's worker process, and the intervals during which the parent let it run."""

    spec: RowSpec
    proc: subprocess.Popen[bytes]
    result: Path
    log: Path
    resumed: float | None  # when it last began to run; None while stopped
    running: list[Interval] = field(default_factory=list)


def launch(spec: RowSpec, python: Path, data_dir: Path, s: Settings, logs: Path) -> Launched:
    """Start the row in a fresh process, in its own process group (its DataLoader or compile
    workers included, so that stopping the group stops all of it)."""
    result, log = logs / f"{spec.name}.json", logs / f"{spec.name}.log"
    result.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", spec.name]
    cmd += ["--data", str(data_dir), "--result", str(result), "--settings", json.dumps(asdict(s))]
    launched = time.monotonic()
    cmd += ["--launched", repr(launched)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            env=row_environment(spec, s),
        )
    return Launched(spec, proc, result, log, resumed=launched)


def row_environment(spec: RowSpec, s: Settings) -> dict[str, str]:
    """widedeep rows call keep_freed_memory() as widedeep's CLIs do, and the hand-written rows
    get the same malloc settings (from the environment, as they do not import widedeep); the
    peers run with the allocator as they ship. Called in the parent, which runs in widedeep's
    environment."""
    from widedeep.core.allocator import MALLOC_ENV, OPT_OUT

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV and k != OPT_OUT}
    if s.system_malloc:
        env[OPT_OUT] = "system"
    elif spec.system == "hand-written":
        env.update(MALLOC_ENV)
    return env


def signal_group(row: Launched, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited
        os.killpg(row.proc.pid, sig)


def run_slice(row: Launched, seconds: float | None) -> bool:
    """Let ``row`` run for at most ``seconds`` (None: to its end), then stop its process group;
    True once it has exited."""
    if row.resumed is None:
        row.resumed = time.monotonic()
        signal_group(row, signal.SIGCONT)
    try:
        row.proc.wait(timeout=seconds)
        done = True
    except subprocess.TimeoutExpired:
        signal_group(row, signal.SIGSTOP)
        done = False
    row.running.append((row.resumed, time.monotonic()))
    row.resumed = None
    return done


def finish(row: Launched, others_cpu_share: float, load_before: float) -> dict[str, Any]:
    """The row's result, summarized over the time it ran; or its error and its log's end."""
    spec = row.spec
    if row.proc.returncode != 0 or not row.result.exists():
        tail = row.log.read_text(errors="replace").strip().splitlines()[-12:]
        return {
            "row": spec.name,
            "system": spec.system,
            "error": "\n".join(tail),
            "log": str(row.log),
        }
    out = json.loads(row.result.read_text())
    raw = out.pop("clock")
    clock = StepClock(**{**raw, "inside": [tuple(x) if x else None for x in raw["inside"]]})
    out["train"] = clock.summary(row.running)
    out["inference"] = inference_summary(out.pop("inference_raw"), row.running)
    out["ran_seconds"] = sum(b - a for a, b in row.running)
    out["slices"] = len(row.running)
    out["load_before"] = load_before
    out["others_cpu_share"] = others_cpu_share
    out["load_after"] = os.getloadavg()[0]
    return out


def run_round(
    specs: list[RowSpec],
    pythons: dict[str, Path | str],
    data_dir: Path,
    s: Settings,
    logs: Path,
    interleave: float | None,
) -> list[dict[str, Any]]:
    """Every row once. Without ``interleave``, one after the other. With it, the rows' processes
    take turns of ``interleave`` seconds (the others stopped by SIGSTOP), so that every row is
    timed across the whole round: a slow or fast minute of this shared machine then falls on
    all rows alike instead of on whichever row ran in it. Only one row runs at any time."""
    load_before = os.getloadavg()[0]
    busy_before, ours_before, started = busy_cpu_seconds(), children_cpu_seconds(), time.time()
    errors: dict[str, dict[str, Any]] = {}
    finished: dict[str, Launched] = {}
    live: list[Launched] = []
    turns: deque[RowSpec | Launched] = deque(specs)  # launched at its first turn
    try:
        while turns:
            item = turns.popleft()
            if isinstance(item, RowSpec):
                python = pythons["peers" if item.peer else "own"]
                if isinstance(python, str):
                    errors[item.name] = {"row": item.name, "system": item.system, "error": python}
                    continue
                print(f"throughput: {item.name}", file=sys.stderr, flush=True)
                item = launch(item, python, data_dir, s, logs)
                live.append(item)
            if run_slice(item, interleave):
                finished[item.spec.name] = item
                live.remove(item)
            else:
                turns.append(item)
    finally:
        for row in live:  # interrupted: leave no stopped process behind
            signal_group(row, signal.SIGKILL)
            signal_group(row, signal.SIGCONT)
            row.proc.wait()
    wall = time.time() - started
    # The share of the machine that other processes used during the round: the load average
    # cannot tell (it lags, and counts our own rows), /proc/stat minus our own CPU time can.
    others = (busy_cpu_seconds() - busy_before) - (children_cpu_seconds() - ours_before)
    share = max(0.0, others / (wall * (os.cpu_count() or 1)))
    results = {name: finish(row, share, load_before) for name, row in finished.items()}
    return [results.get(spec.name) or errors[spec.name] for spec in specs]


def combine(runs: list[dict[str, Any]], interleaved: bool) -> dict[str, Any]:
    """A row's result over the rounds (each round is kept whole in the report's ``rounds``).
    Sequential rounds: the round with the best training throughput and the best inference of
    all (the other load on a shared machine only ever slows a run down). Interleaved rounds:
    every row saw the same machine, so the mean of the rounds' rates and times, and the largest
    peak RSS."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    if interleaved:
        out = dict(ok[-1])
        out["train"], out["inference"] = dict(out["train"]), dict(out["inference"])
        for part, key in (
            ("train", "samples_per_s"),
            ("inference", "samples_per_s"),
            ("train", "median_step_ms"),
            ("train", "time_to_first_step_s"),
        ):
            out[part][key] = float(np.mean([r[part][key] for r in ok]))
        out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
        parts = [r["train"].get("breakdown_ms_per_step") for r in ok]
        if all(parts):
            out["train"]["breakdown_ms_per_step"] = {
                k: float(np.mean([b[k] for b in parts])) for k in parts[0]
            }
    else:
        out = dict(max(ok, key=lambda r: r["train"]["samples_per_s"]))
        out["inference"] = max((r["inference"] for r in ok), key=lambda i: i["samples_per_s"])
    out["failed_runs"] = len(runs) - len(ok)
    return out


def run_rows(
    specs: list[RowSpec],
    s: Settings,
    data_dir: Path,
    work: Path,
    repeat: int,
    interleave: float | None = None,
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """``repeat`` rounds of every row (see run_round); each row combined over the rounds, and
    the rounds themselves."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pythons: dict[str, Path | str] = {"own": Path(sys.executable)}
    if any(spec.peer for spec in specs):
        try:
            pythons["peers"] = peers_python(work, logs / "peers-venv.log")
        except subprocess.CalledProcessError as err:
            pythons["peers"] = f"the peers' venv did not install: {err}"
    rounds = []
    for round_ in range(repeat):
        print(f"throughput: round {round_ + 1}/{repeat}", file=sys.stderr, flush=True)
        rounds.append(run_round(specs, pythons, data_dir, s, logs, interleave))
    combined = [combine([r[k] for r in rounds], interleave is not None) for k in range(len(specs))]
    return combined, rounds


def add_ratios(results: list[dict[str, Any]], gflops: float) -> None:
    """Each row against its hand-written reference and against the MLP's matmul ceiling."""
    by_name = {r["row"]: r for r in results if "error" not in r}
    ceiling_train = gflops * 1e9 / mlp_flops_per_sample(train=True)
    ceiling_infer = gflops * 1e9 / mlp_flops_per_sample(train=False)
    for r in by_name.values():
        spec = ROW_BY_NAME[r["row"]]
        # A hand-written row is its own reference; a row without one gets no ratio.
        ref = by_name.get(spec.name if spec.system == "hand-written" else spec.reference or "")
        train = r["train"]["samples_per_s"]
        r["vs_handwritten"] = train / ref["train"]["samples_per_s"] if ref else None
        r["vs_handwritten_row"] = ref["row"] if ref else None
        r["train_of_ceiling"] = train / ceiling_train
        r["inference_of_ceiling"] = r["inference"]["samples_per_s"] / ceiling_infer


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets that this run's rows can decide."""
    ok = {r["row"]: r for r in results if "error" not in r}
    out: list[dict[str, Any]] = []
    for name in ("widedeep-adam", "widedeep-adam-fused", "widedeep-sparse"):
        r = ok.get(name)
        if r and r.get("vs_handwritten") is not None:
            out.append(
                {
                    "key": name,
                    "target": f"{name} >= 0.95x {r['vs_handwritten_row']} (same optimizer)",
                    "value": r["vs_handwritten"],
                    "met": r["vs_handwritten"] >= 0.95,
                }
            )
    ours = [r for r in ok.values() if r["system"] == "widedeep"]
    if not ours:
        return out
    fastest = max(ours, key=lambda r: r["train"]["samples_per_s"])
    best_infer = max(ours, key=lambda r: r["inference"]["samples_per_s"])
    for peer, factor in (("pytorch-widedeep", 2.0), ("deepctr-torch", 1.8)):
        if peer in ok:
            value = fastest["train"]["samples_per_s"] / ok[peer]["train"]["samples_per_s"]
            out.append(
                {
                    "key": f"train-vs-{peer}",
                    "target": f"fastest widedeep ({fastest['row']}) >= {factor}x {peer} training",
                    "value": value,
                    "met": value >= factor,
                }
            )
    for peer in ("pytorch-widedeep", "deepctr-torch"):
        if peer in ok:
            value = (
                best_infer["inference"]["samples_per_s"] / ok[peer]["inference"]["samples_per_s"]
            )
            out.append(
                {
                    "key": f"inference-vs-{peer}",
                    "target": f"widedeep inference >= 2.5x {peer}",
                    "value": value,
                    "met": value >= 2.5,
                }
            )
    return out


def targets_over_rounds(
    results: list[dict[str, Any]], rounds: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The targets of the combined rows, each with its value in every round: with
    ``--interleave`` every round is a fair comparison of its own."""
    per_round = [{t["key"]: t for t in targets(r)} for r in rounds]
    out = targets(results)
    for t in out:
        t["rounds"] = [r[t["key"]]["value"] for r in per_round if t["key"] in r]
        t["met_rounds"] = sum(r[t["key"]]["met"] for r in per_round if t["key"] in r)
    return out


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table_row(r: dict[str, Any]) -> str:
    if "error" in r:
        first = r["error"].splitlines()[-1] if r["error"] else "failed"
        return f"| {r['row']} | failed: {first[:80]} |" + " |" * 8
    b = r["train"].get("breakdown_ms_per_step")
    outside = f"{b['outside']:.1f} ms ({b['outside_share']:.0%})" if b else "–"
    ratio = r.get("vs_handwritten")
    ref = (
        f" ({r['vs_handwritten_row']})"
        if ratio is not None and r["system"] != "hand-written"
        else ""
    )
    cells = [
        r["row"],
        r["optimizer"],
        _fmt(r["train"]["samples_per_s"]),
        _fmt(ratio, ".2f", "x") + ref,
        _fmt(r["train_of_ceiling"] * 100, ".0f", "%"),
        _fmt(r["inference"]["samples_per_s"]),
        _fmt(r["inference_of_ceiling"] * 100, ".0f", "%"),
        _fmt(r["peak_rss_mib"]),
        _fmt(r["train"]["time_to_first_step_s"], ".1f"),
        outside,
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| row | optimizer | train samples/s | vs hand-written | of train ceiling "
    "| inference samples/s | of inference ceiling | peak RSS MiB | first step s "
    "| outside fwd/bwd/step |\n" + "|---" * 10 + "|"
)


BUSY = 0.05  # the share of the CPU used by others above which the table carries a warning


def render(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    ok = [r for r in report["results"] if "error" not in r]
    lines: list[str] = [
        "# Throughput",
        "",
        f"`{report['command']}`",
        "",
        f"{report['rows']:,} rows ({report['train_rows_note']}), batch {s['batch_size']}, "
        f"inference batch {s['eval_batch_size']}, {s['threads']} threads, "
        f"warm-up {s['warmup']} steps, {report['run_note']}; {m['cpu']}, {m['cores']} cores, "
        f"load {m['load_start']:.2f} at start, {m['load_end']:.2f} at end; {report['date']}.",
        "",
        f"Ceiling: fp32 matmul {report['gflops']:.0f} GFLOP/s / MLP "
        f"{mlp_flops_per_sample(True) / 1e6:.2f} MFLOP per training sample = "
        f"{report['ceiling_train']:,.0f} samples/s training, "
        f"{report['ceiling_inference']:,.0f} inference.",
        "",
    ]
    busiest = max((r["others_cpu_share"] for r in ok), default=0.0)
    if busiest >= BUSY:
        lines += [
            f"**The machine was busy: other processes used up to {busiest:.0%} of its CPU while "
            "a reported run ran, so these numbers are low, and unevenly. Re-run on a quiet "
            "machine (`--repeat` helps).**",
            "",
        ]
    lines += [
        HEADER,
        *(table_row(r) for r in report["results"]),
        "",
    ]
    if report["targets"]:
        lines += ["| target | value | each round | met |", "|---|---|---|---|"]
        lines += [
            f"| {t['target']} | {t['value']:.2f}x | "
            f"{', '.join(f'{v:.2f}x' for v in t['rounds'])} | "
            f"{'yes' if t['met'] else 'NO'} ({t['met_rounds']}/{len(t['rounds'])} rounds) |"
            for t in report["targets"]
        ]
        lines.append("")
    for r in report["results"]:
        b = r.get("train", {}).get("breakdown_ms_per_step")
        if b:
            lines.append(
                f"- {r['row']}: {b['total']:.1f} ms/step = forward {b['forward']:.1f} + "
                f"backward {b['backward']:.1f} + optimizer {b['optimizer']:.1f} + "
                f"outside {b['outside']:.1f} ({b['outside_share']:.1%})"
            )
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)  # a temp file is private; the results are not
    os.replace(tmp.name, path)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def select_rows(only: str | None, peers: bool) -> list[RowSpec]:
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in ROW_BY_NAME]
        if unknown:
            raise SystemExit(f"throughput: unknown rows {unknown}; known: {sorted(ROW_BY_NAME)}")
        return [ROW_BY_NAME[n] for n in names]
    return [r for r in ROWS if r.default and (peers or not r.peer)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of generated data")
    p.add_argument("--peers", action="store_true", help="add pytorch-widedeep and deepctr-torch")
    p.add_argument("--rows-only", help="comma-separated table rows to run, e.g. widedeep-adam")
    p.add_argument("--steps", type=int, help="at most this many training steps per row")
    p.add_argument("--warmup", type=int, default=10, help="training steps left out of samples/s")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--eval-batch-size", type=int, default=8192)
    p.add_argument("--infer-rows", type=int, help="rows scored for inference (default: all)")
    p.add_argument(
        "--infer-passes", type=int, default=3, help="inference passes per row; the median"
    )
    p.add_argument(
        "--system-malloc",
        action="store_true",
        help="widedeep and hand-written rows without widedeep.keep_freed_memory's malloc settings",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="rounds of every row (see --interleave)")
    p.add_argument(
        "--interleave",
        type=float,
        metavar="SECONDS",
        help="run the rows' processes in turns of SECONDS (the others stopped), not one after "
        "the other; each row then reports the mean over the rounds, not the best",
    )
    p.add_argument(
        "--peer-workers", type=int, help="pytorch-widedeep's DataLoader workers (default: its own)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results", help="throughput.md/.json here")
    p.add_argument("--work", type=Path, default=HERE / ".work", help="data, logs, peers' venv")
    # Internal: one row in this process.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    p.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        threads=args.threads,
        warmup=args.warmup,
        steps=args.steps,
        infer_rows=args.infer_rows,
        infer_passes=args.infer_passes,
        system_malloc=args.system_malloc,
        peer_workers=args.peer_workers,
        seed=args.seed,
    )


def worker_main(args: argparse.Namespace) -> int:
    raw = json.loads(args.settings)
    s = Settings(**{**raw, "hidden": tuple(raw["hidden"])})
    result = worker(ROW_BY_NAME[args.worker], args.data, s, args.launched)
    atomic_write(args.result, json.dumps(result, indent=2))
    return 0


def run_note(repeat: int, interleave: float | None) -> str:
    if interleave:
        how = f"rows interleaved in turns of {interleave:g} s"
        return how + (f", mean of {repeat} rounds" if repeat > 1 else ", one round")
    return f"best of {repeat} round-robin runs per row" if repeat > 1 else "one run"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.interleave is not None and args.interleave <= 0:
        raise SystemExit(f"throughput: --interleave must be > 0 seconds, got {args.interleave}")
    if args.infer_passes < 1:
        raise SystemExit(f"throughput: --infer-passes must be >= 1, got {args.infer_passes}")
    if args.repeat < 1:
        raise SystemExit(f"throughput: --repeat must be >= 1, got {args.repeat}")
    specs = select_rows(args.rows_only, args.peers)
    s = settings_from(args)
    load_start = os.getloadavg()[0]
    gflops = matmul_gflops(s.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work, prefix="data-") as tmp:
        save_data(generate(args.rows, s.seed), Path(tmp))
        results, rounds = run_rows(specs, s, Path(tmp), args.work, args.repeat, args.interleave)
    gflops = max(gflops, matmul_gflops(s.threads))  # the better of before and after the rows
    for round_ in [results, *rounds]:
        add_ratios(round_, gflops)
    report = {
        "command": shlex.join(["python", "benchmarks/throughput.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": args.rows,
        "run_note": run_note(args.repeat, args.interleave),
        "train_rows_note": f"at most {s.steps} steps per row" if s.steps else "one epoch",
        "settings": asdict(s),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
        },
        "gflops": gflops,
        "ceiling_train": gflops * 1e9 / mlp_flops_per_sample(True),
        "ceiling_inference": gflops * 1e9 / mlp_flops_per_sample(False),
        "results": results,
        "rounds": rounds,
    }
    report["targets"] = targets_over_rounds(results, rounds)
    text = render(report)
    print(text)
    atomic_write(args.out / "throughput.md", text)
    atomic_write(args.out / "throughput.json", json.dumps(report, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
