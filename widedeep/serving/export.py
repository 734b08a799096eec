"""Export a trained model with ``torch.export``: a ``.pt2`` file that only torch can run.

    python -m widedeep.cli.export RUN/checkpoints/best.ckpt model.pt2

The program takes the batch tensors of `Batch.inputs()` as keywords (categorical (B, F) int64,
crosses (B, C) int64, dense (B, N) float32, bags: a list of (values (L,), offsets (B,)) int64
pairs) with a dynamic batch size and bag lengths, and returns (logit, wide_logit, deep_logit),
each (B,). Ids are the encoded ones (0 = missing, 1 = unseen): raw rows go through the run's
preprocessing first (`widedeep.serving.predictor`). Why torch.export rather than TorchScript:
TorchScript is deprecated, and tracing would bake in the example's batch size; an exported
program keeps the batch and bag lengths symbolic. The file's ``widedeep.json`` extra file holds
the schema and an example batch with its expected logits, so a loader can check itself
(examples/load_exported.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram

from widedeep.core.batch import Batch, random_batch
from widedeep.core.io import atomic_write
from widedeep.core.schema import Schema
from widedeep.nn.model import WideDeep
from widedeep.training.checkpoint import model_from_checkpoint
from widedeep.training.run_files import checkpoint_paths

META = "widedeep.json"
OUTPUTS = ("logit", "wide_logit", "deep_logit")


class TowerScores(nn.Module):
    """`WideDeep.parts` as a plain tuple: a NamedTuple output would need its class to load."""

    def __init__(self, model: WideDeep) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, categorical: Tensor, crosses: Tensor, dense: Tensor, bags: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor, Tensor]:
        parts = self.model.parts(categorical, crosses, dense, bags)
        return parts.logit, parts.wide, parts.deep


def example_batch(schema: Schema, size: int = 8, seed: int = 0) -> Batch:
    """Ids over each field's whole range (0 = missing included); every bag row non-empty, so
    the example does not pin a bag length of 0 or 1 (export would specialise on it)."""
    return random_batch(schema, size, seed, min_bag_length=1)


def export_program(model: WideDeep, example: Batch) -> ExportedProgram:
    """``model`` (eval mode) -> an ExportedProgram over dynamic batch and bag lengths."""
    batch = Dim("batch", min=1)
    shapes = {
        "categorical": {0: batch},
        "crosses": {0: batch},
        "dense": {0: batch},
        "bags": [({0: Dim(f"bag{k}_values", min=0)}, {0: batch}) for k in range(len(example.bags))],
    }
    with torch.no_grad():
        return torch.export.export(
            TowerScores(model.eval()), (), kwargs=example.inputs(), dynamic_shapes=shapes
        )


def _tolist(inputs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v.tolist() for k, v in inputs.items() if k != "bags"}
    out["bags"] = [[v.tolist(), o.tolist()] for v, o in inputs["bags"]]
    return out


def export_model(checkpoint: str | Path, path: str | Path) -> Path:
    """Export a run's checkpoint (or run directory) to ``path`` (a .pt2 file), atomically."""
    out = Path(path)
    if out.suffix != ".pt2":  # torch.export.load expects the suffix (it warns otherwise)
        raise ValueError(f"{out}: an exported program's file name must end in .pt2")
    ckpt, _ = checkpoint_paths(checkpoint)
    model, hp = model_from_checkpoint(ckpt)
    schema = Schema.from_dict(hp["schema"])
    example = example_batch(schema)
    program = export_program(model, example)
    with torch.no_grad():
        expected = model.parts(**example.inputs())
    meta = {
        "inputs": ["categorical", "crosses", "dense", "bags"],
        "outputs": list(OUTPUTS),
        "kind": hp["kind"],
        "schema": schema.to_dict(),
        "example": {
            "inputs": _tolist(example.inputs()),
            **{k: v.tolist() for k, v in zip(OUTPUTS, expected, strict=True)},
        },
    }
    # Into memory first: torch.export.save wants a .pt2 name, atomic_write's temporary has none.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META: json.dumps(meta)})
    atomic_write(out, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return out


def load_exported(path: str | Path) -> tuple[ExportedProgram, dict[str, Any]]:
    """(program, metadata) of an exported file; ``program.module()(**batch.inputs())`` runs it."""
    extra = {META: ""}
    program = torch.export.load(Path(path), extra_files=extra)
    return program, json.loads(extra[META])
