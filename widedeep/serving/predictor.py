"""Score raw rows with a trained run: its model, its fitted preprocessing, its data config."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import OmegaConf

from widedeep.core.io import atomic_write
from widedeep.core.schema import Schema
from widedeep.data import cache
from widedeep.data.columnar import ColumnarData
from widedeep.data.pipeline import data_root
from widedeep.data.preprocess import Preprocessor, oov_rate
from widedeep.data.raw import read_raw
from widedeep.data.readers import READERS
from widedeep.data.readers._rows import (
    collect_bad_rows,
)
from widedeep.nn.model import WideDeep
from widedeep.training.checkpoint import model_from_checkpoint
from widedeep.training.compiled import compile_model
from widedeep.training.predict import predict_split
from widedeep.training.run_files import checkpoint_paths, read_run_yaml

log = logging.getLogger("widedeep")
WRITERS = {".parquet": "write_parquet", ".csv": "write_csv"}


def load_preprocessor(run: Path, data_cfg: Mapping[str, Any]) -> Preprocessor:
    """The run's fitted preprocessing: ``run/preprocessor``, else (a run from before training
    saved it) the processed-data cache entry of the run's data config, if still there."""
    saved = run / "preprocessor"
    if (saved / "preprocessor.json").is_file():
        return Preprocessor.load(saved)
    name = str(data_cfg.get("name"))
    if name in READERS and cache.enabled(data_cfg):
        root = data_root(data_cfg)
        digest, _ = cache.fingerprint(data_cfg, root, READERS[name])
        entry = cache.entry_dir(cache.cache_root(data_cfg, root), name, digest)
        if cache.trusted(entry, digest):
            return Preprocessor.load(entry / "preprocessor")
    raise FileNotFoundError(
        f"{saved}: no saved preprocessing, and no cache entry matches the run's data config "
        "(retrain with this version of widedeep-train, which saves it)"
    )


@dataclass
class Predictor:
    """A trained model with the preprocessing it was trained on."""

    model: WideDeep
    preprocessor: Preprocessor
    data_cfg: dict[str, Any]

    @classmethod
    def load(cls, checkpoint: str | Path, compile: bool | None = False) -> Predictor:
        """``compile``: torch.compile the model's MLPs (`compile_model`); None: as the run's
        ``trainer.compile`` (false for a run from before the option)."""
        path, run = checkpoint_paths(checkpoint)
        run_cfg = read_run_yaml(run / "config.yaml")
        data_cfg = OmegaConf.to_container(run_cfg.data, resolve=True)
        model, hp = model_from_checkpoint(path)
        if compile is None:
            compile = bool(OmegaConf.select(run_cfg, "trainer.compile", default=False))
        if not isinstance(compile, bool):
            raise ValueError(f"compile={compile!r}: expected true or false")
        if compile:
            compile_model(model)
        pre = load_preprocessor(run, data_cfg)
        if pre.schema != Schema.from_dict(hp["schema"]):
            raise ValueError(
                f"{run}: the saved preprocessing does not match the checkpoint's "
                "schema (fields or vocabulary sizes differ)"
            )
        return cls(model, pre, data_cfg)

    def score(
        self, raw: pl.DataFrame, where: str = "input", batch_size: int = 8192
    ) -> pl.DataFrame:
        """Raw rows -> row_id, [label], wide_logit, deep_logit, logit, score."""
        pre, label = self.preprocessor, self.preprocessor.spec.label
        encoded = pre.transform(raw, where)
        has_label = label in encoded.columns
        if not has_label:  # serving rows: ColumnarData wants a label, any valid one will do
            encoded = encoded.with_columns(pl.lit(0.0, pl.Float32).alias(label))
        unseen = {k: v for k, v in oov_rate(encoded, pre.spec.fields).items() if v}
        if unseen:
            log.info(
                "%s: share of unseen values (OOV id): %s",
                where,
                {k: f"{v:.2%}" for k, v in unseen.items()},
            )
        data = ColumnarData.from_frame(encoded, pre.schema, where)
        out = predict_split(self.model, data, batch_size)
        out = out.with_columns((1 / (1 + (-pl.col("logit")).exp())).alias("score"))
        return out if has_label else out.drop("label")


def predict_file(
    checkpoint: str | Path,
    input: str | Path,
    output: str | Path | None = None,
    reader: str | None = None,
    on_bad_rows: str | None = None,
    batch_size: int | None = None,
    compile: bool | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Score a raw file; write the scores atomically if ``output``. Returns (scores, ``{file:
    bad rows skipped}``). ``compile``: torch.compile the model (None: as the run trained)."""
    out_path = Path(output) if output is not None else None
    if out_path is not None and out_path.suffix.lower() not in WRITERS:
        raise ValueError(f"output={out_path}: the suffix must be one of {sorted(WRITERS)}")
    path = Path(input).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"input {path}: no such file")
    predictor = Predictor.load(checkpoint, compile)
    if on_bad_rows is not None:
        predictor.data_cfg["on_bad_rows"] = on_bad_rows
    with collect_bad_rows() as bad:
        raw = read_raw(predictor.data_cfg, path, reader)
    size = batch_size or int(predictor.data_cfg.get("eval_batch_size") or 8192)
    scores = predictor.score(raw, f"input {path}", size)
    if out_path is not None:
        atomic_write(out_path, getattr(scores, WRITERS[out_path.suffix.lower()]))
    return scores, {f: n for f, n in bad.items() if n}
