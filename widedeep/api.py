"""Train and score from a DataFrame in memory (polars or pandas): a notebook's way in.

    model = widedeep.fit(frame, label="rating", threshold=4, categorical=["user", "item"],
                         dense=["price"], crosses=[["user", "item"]])
    model.metrics["test"]["auc"], model.predict(new_rows)

No second code path: `fit` writes the frame as the Parquet file of a ``data=table`` run
(``<run>/frame.parquet``), composes the config ``widedeep-train`` would run (``data=table``
plus ``overrides``, e.g. ``["trainer.max_epochs=2", "model=wide"]``) and calls the same
``train(cfg)``: the same Preprocessor, LightningModule, checkpoint and run directory, which
``widedeep-predict`` and `load_model` read back. `TrainedModel.predict` goes through the serving
`Predictor` with the table reader's conversions, as ``widedeep-predict`` does for a file.
Lightning and Hydra load on the first call, not on import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

FRAME_FILE = "frame.parquet"


def fit(
    frame: Any,
    label: str,
    *,
    categorical: Sequence[str] = (),
    dense: Sequence[str] = (),
    bags: Sequence[str] = (),
    crosses: Sequence[Sequence[str] | Mapping[str, Any]] = (),
    positive: Any = None,
    threshold: float | None = None,
    time_column: str | None = None,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
) -> TrainedModel:
    """Train on ``frame`` (a polars or pandas DataFrame) and return the trained run.

    ``label``: the label's column, 1 where it equals ``positive`` (a value or a list), else where
    it is ``>= threshold``, else holding 0/1. ``categorical``, ``dense``, ``bags`` (list columns
    or ``|``-separated strings) and ``crosses`` (lists of categorical columns, or
    ``data.features.crosses`` entries) as in ``conf/data/table.yaml``. ``time_column``: split by
    time (oldest rows train) instead of at random. ``overrides``: any ``widedeep-train``
    override. ``output_dir``: the run directory (default ``outputs/<date>/<time>``, as the CLI).
    """
    from omegaconf import OmegaConf

    from widedeep.cli.config import compose_config
    from widedeep.training.run import train

    out = Path(output_dir or time.strftime("outputs/%Y-%m-%d/%H-%M-%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    table = as_polars(frame)
    table.write_parquet(out / FRAME_FILE)
    # The frame is in memory already: no cache entry per run, unless an override asks for one.
    cfg = compose_config(["data=table", "data.cache=false", *overrides], output_dir=str(out))
    spec = {
        "data.files": [str(out / FRAME_FILE)],
        "data.label.column": label,
        "data.label.positive": list(positive) if _is_list(positive) else positive,
        "data.label.threshold": threshold,
        "data.features.categorical": list(categorical),
        "data.features.dense": list(dense),
        "data.features.bags": list(bags),
        "data.features.crosses": [dict(c) if isinstance(c, Mapping) else list(c)
                                  for c in crosses],
    }
    if time_column is not None:
        spec |= {"data.split.method": "time", "data.split.column": time_column}
    for key, value in spec.items():
        OmegaConf.update(cfg, key, value, merge=False)
    metrics = train(cfg)
    return TrainedModel(out, metrics)


def load_model(run: str | Path) -> TrainedModel:
    """A run directory written by `fit` or ``widedeep-train data=table``."""
    path = Path(run)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file}: no such file (not a finished run)")
    return TrainedModel(path, json.loads(metrics_file.read_text()))


@dataclass
class TrainedModel:
    """A trained run: its directory, its metrics (``metrics.json``) and scoring of new rows."""

    path: Path
    metrics: dict[str, Any]
    _predictor: Any = field(default=None, repr=False)

    def scores(self, frame: Any) -> pl.DataFrame:
        """Rows of a frame with the training columns (the label may be absent) -> ``row_id``,
        [``label``], ``wide_logit``, ``deep_logit``, ``logit`` and ``score``, as
        ``widedeep-predict`` writes them."""
        from widedeep.data.readers.table import frame_rows
        from widedeep.serving.predictor import Predictor

        if self._predictor is None:
            self._predictor = Predictor.load(self.path)
        predictor = self._predictor
        if predictor.data_cfg.get("name") != "table":
            raise ValueError(f"{self.path}: a data={predictor.data_cfg.get('name')} run; "
                             "score its files with widedeep-predict")
        raw = frame_rows(predictor.data_cfg, as_polars(frame), "optional")
        size = int(predictor.data_cfg.get("eval_batch_size") or 8192)
        return predictor.score(raw, "frame", size)

    def predict(self, frame: Any) -> np.ndarray:
        """One probability (sigmoid of the logit) per row of ``frame``."""
        return self.scores(frame)["score"].to_numpy()


def as_polars(frame: Any) -> pl.DataFrame:
    """A polars DataFrame from a polars or pandas one."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if type(frame).__module__.startswith("pandas"):
        return pl.from_pandas(frame)
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)
