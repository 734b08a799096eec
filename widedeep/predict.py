"""Scores of a trained model on a split, with each tower's share."""

from __future__ import annotations

import polars as pl
import torch

from .data import BatchLoader, ColumnarData
from .model import WideDeep


@torch.inference_mode()
def predict_split(model: WideDeep, data: ColumnarData, batch_size: int = 8192) -> pl.DataFrame:
    """One row per example: row_id, label, wide_logit, deep_logit, logit (final)."""
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("row_id", "label", "wide", "deep", "logit")
    }
    for batch in BatchLoader(data, batch_size):
        out = model.parts(**batch.inputs())
        parts["row_id"].append(batch.row_id)
        parts["label"].append(batch.label)
        parts["wide"].append(out.wide)
        parts["deep"].append(out.deep)
        parts["logit"].append(out.logit)
    model.train(was_training)
    cols = {k: torch.cat(v).numpy() for k, v in parts.items()}
    return pl.DataFrame(
        {
            "row_id": cols["row_id"],
            "label": cols["label"].astype("int8"),
            "wide_logit": cols["wide"],
            "deep_logit": cols["deep"],
            "logit": cols["logit"],
        }
    )
