"""FuxiCTR's WideDeep trained by its own ``BaseModel.fit`` (one epoch), scored by its ``predict``.

The model is benchmarks/fuxictr/models.py's WideDeep (the model zoo's, rebuilt from the wheel's
layers for the Frappe cross-check), fed the benchmark's generated data the way FuxiCTR takes
data: a feature map (``feature_map.json``: 26 categorical fields, 13 numeric ones, the label)
and one .npz of columns per split, read by that cross-check's in-memory loader
(benchmarks/fuxictr/loader.py). What that changes against the other rows (THROUGHPUT.md,
"FuxiCTR's environment"):

- FuxiCTR embeds a numeric field like a categorical one (its value times a learned 16-dim
  vector), and its WideDeep stacks all fields' embeddings, so the MLP sees 39 x 16 = 624 inputs,
  not 26 x 16 + 13 = 429: about 16% more MLP work per sample. The wide part (FuxiCTR's
  LogisticRegression over every field) has one weight per numeric field too.
- Its loop clips the gradient norm at 10 every step (``fit``'s ``max_gradient_norm``), and ends
  the epoch by evaluating a validation set, saving a checkpoint and loading it back: the
  validation set is the first inference batch, and all of that comes after the last step.
- Its loss is ``binary_cross_entropy`` on the sigmoid output; its optimizer torch's Adam.

Runs in FuxiCTR's own venv ($FUXICTR_VENV, made by benchmarks/fuxictr/setup.sh).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .common import field_names, time_optimizer_steps

FUXICTR_DIR = Path(__file__).resolve().parents[1] / "fuxictr"  # models.py, loader.py
DATASET_ID = "throughput"


def _load(name: str) -> ModuleType:
    """benchmarks/fuxictr/<name>.py by its path: that folder is called ``fuxictr`` like the
    library, so it cannot be imported as a package."""
    spec = importlib.util.spec_from_file_location(
        f"fuxictr_bench_{name}", FUXICTR_DIR / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load() -> str:
    import fuxictr

    return str(fuxictr.__version__)


def feature_map_json(cards: list[int], num_dense: int) -> dict[str, Any]:
    """What FuxiCTR's FeatureProcessor writes for such data: the ids are already encoded, 0 is
    the padding id (as its tokenizer numbers them; the data's ids start at 2)."""
    dense_names, cat_names = field_names(num_dense, len(cards))
    features: list[dict[str, Any]] = [
        {name: {"source": "", "type": "numeric"}} for name in dense_names
    ]
    features += [
        {name: {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": card}}
        for name, card in zip(cat_names, cards, strict=True)
    ]
    return {
        "dataset_id": DATASET_ID,
        "num_fields": len(features),
        "total_features": sum(cards) + num_dense,
        "input_length": len(features),
        "labels": ["label"],
        "features": features,
    }


class Row:
    """FuxiCTR's WideDeep with Adam; ``train`` is one epoch of its ``fit``."""

    def __init__(self, data: dict[str, np.ndarray], cards: list[int], settings: dict[str, Any]):
        from fuxictr.features import FeatureMap
        from fuxictr.pytorch.torch_utils import seed_everything

        self.data, self.s = data, settings
        self.work = tempfile.TemporaryDirectory(prefix="fuxictr-row-")  # npz files, checkpoint
        root = Path(self.work.name)
        (root / DATASET_ID).mkdir()
        fmap = root / DATASET_ID / "feature_map.json"
        fmap.write_text(json.dumps(feature_map_json(cards, data["dense"].shape[1])))
        self.params: dict[str, Any] = {
            "model_id": "WideDeep",
            "gpu": -1,
            "task": "binary_classification",
            "loss": "binary_crossentropy",
            "metrics": ["AUC"],
            "monitor": "AUC",
            "optimizer": "adam",
            "learning_rate": settings["lr"],
            "embedding_dim": settings["embed_dim"],
            "hidden_units": list(settings["hidden"]),
            "hidden_activations": "relu",
            "net_dropout": 0,
            "batch_norm": False,
            "embedding_regularizer": None,
            "net_regularizer": None,
            "batch_size": settings["batch_size"],
            "shuffle": True,
            "num_workers": 0,  # in the row's process, as every other row loads its batches
            "verbose": 0,
            "model_root": str(root / "checkpoints") + "/",
        }
        seed_everything(seed=settings["seed"])  # torch's RNG: the loader's shuffle too
        self.feature_map = FeatureMap(DATASET_ID, str(root / DATASET_ID))
        self.feature_map.load(str(fmap), self.params)
        (root / "checkpoints" / DATASET_ID).mkdir(parents=True)
        self.model = _load("models").WideDeep(self.feature_map, **self.params)
        self.loader_class = _load("loader").NpzBatchLoader
        self.npz: dict[int, str] = {}
        self.eval_loaders: dict[int, Any] = {}

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def split(self, rows: int) -> str:
        """The first ``rows`` rows as FuxiCTR's .npz of columns (one file per row count)."""
        if rows not in self.npz:
            dense, cat = self.data["dense"], self.data["categorical"]
            dense_names, cat_names = field_names(dense.shape[1], cat.shape[1])
            columns = {n: dense[:rows, j] for j, n in enumerate(dense_names)}
            columns |= {n: cat[:rows, j] for j, n in enumerate(cat_names)}
            columns["label"] = self.data["label"][:rows]
            path = Path(self.work.name) / f"rows-{rows}.npz"
            np.savez(path, **columns)
            self.npz[rows] = str(path)
        return self.npz[rows]

    def loader(self, rows: int, batch_size: int, shuffle: bool) -> Any:
        params = {**self.params, "batch_size": batch_size, "shuffle": shuffle}
        return self.loader_class(self.feature_map, self.split(rows), **params)

    def train(self, rows: int, on_step: Callable[[], None]) -> None:
        time_optimizer_steps(self.model.optimizer, on_step)
        train_gen = self.loader(rows, self.s["batch_size"], shuffle=True)
        # fit ends the epoch with a validation pass, which also writes the checkpoint it loads
        # back at the end: the first inference batch, after the last timed step.
        valid = min(rows, self.s["eval_batch_size"])
        valid_gen = self.loader(valid, self.s["eval_batch_size"], shuffle=False)
        self.model.fit(train_gen, epochs=1, validation_data=valid_gen, **self.params)

    def predict(self, rows: int) -> None:
        """FuxiCTR's ``predict`` over the first ``rows`` rows. The first call (time_inference's
        warm-up batch, untimed) also loads the split the timed passes score, as a FuxiCTR user
        builds a test loader once."""
        if not self.eval_loaders:
            scored = self.s["infer_rows"] or len(self.data["label"])
            for n in {rows, scored}:
                self.eval_loaders[n] = self.loader(n, self.s["eval_batch_size"], shuffle=False)
        self.model.predict(self.eval_loaders[rows])
