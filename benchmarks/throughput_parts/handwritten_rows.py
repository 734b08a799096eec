"""The hand-written rows: Wide & Deep in plain PyTorch and its training loop, the ceiling."""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import cardinalities
from .measure import StepClock, synchronizer, time_inference
from .spec import EMBED_DIM, HIDDEN, LR, NUM_DENSE, RowSpec, Settings

if TYPE_CHECKING:
    import torch

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


def precision(spec: RowSpec, device: str) -> contextlib.AbstractContextManager[Any]:
    """What Lightning's ``precision="bf16-mixed"`` does around a step, for a bf16 row: forward
    and loss under bf16 autocast, backward and optimizer step outside it, so that weights,
    gradients and optimizer states stay fp32; a no-op for the fp32 rows."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=spec.bf16)


def run_handwritten(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """The practical ceiling: preloaded tensors, a permutation, slices, forward/backward/step."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(s.seed)
    device, sync = torch.device(s.device), synchronizer(s.device)
    model = plain_model(spec.sparse).to(device)
    optimizers = plain_optimizers(model, spec)
    forward = torch.compile(model) if spec.compile else model
    # On a GPU the whole data set sits in its memory: the ceiling has no host copies.
    ids = torch.from_numpy(data["categorical"]).to(device)
    dense = torch.from_numpy(data["dense"]).to(device)
    label = torch.from_numpy(data["label"]).to(device)
    order = torch.randperm(clock.rows, generator=torch.Generator().manual_seed(s.seed))
    order = order.to(device)
    # A compiled model would recompile for the last, smaller batch: drop it.
    steps = (clock.rows // s.batch_size) if spec.compile else math.ceil(clock.rows / s.batch_size)
    for k in range(steps):
        index = order[k * s.batch_size : (k + 1) * s.batch_size]
        x_ids, x_dense, y = ids[index], dense[index], label[index]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        with precision(spec, s.device):
            loss = F.binary_cross_entropy_with_logits(forward(x_ids, x_dense), y)
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        for opt in optimizers:
            opt.step()
        sync()
        clock.step_done((t1 - t0, t2 - t1, time.perf_counter() - t2))

    model.eval()

    @torch.inference_mode()
    def predict(rows: int) -> None:
        for start in range(0, rows, s.eval_batch_size):
            part = slice(start, min(rows, start + s.eval_batch_size))
            with precision(spec, s.device):
                torch.sigmoid(model(ids[part], dense[part]))
        sync()

    rows = s.infer_rows or len(label)
    params = sum(p.numel() for p in model.parameters())
    clock.row_info["precision"] = "bf16-mixed" if spec.bf16 else "32-true"
    return time_inference(predict, rows, s.eval_batch_size, s.infer_passes), params
