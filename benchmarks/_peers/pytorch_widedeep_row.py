"""pytorch-widedeep's WideDeep (Wide + TabMlp) trained by its own ``Trainer``.

The ids arrive already encoded (as for every system in the benchmark), so its preprocessors are
not run: the inputs are built in the layout `WidePreprocessor` / `TabPreprocessor` produce.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import field_names, time_optimizer_steps

# The torchvision wheels on PyPI are CUDA builds: against the CPU torch their C extension does
# not load, and `import torchvision` then dies in `register_fake("torchvision::nms")` with
# "operator torchvision::nms does not exist". pytorch-widedeep imports torchvision only for its
# image components (unused here), so when the extension does not load, declaring the schemas of
# the two operators that torchvision registers unconditionally is enough; no torchvision
# operator is ever called. Kept alive for the life of the process.
_TORCHVISION_SHIM: list[torch.library.Library] = []


def _torchvision_extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to work around
    for folder in spec.submodule_search_locations:
        for path in Path(folder).glob("_C*.so"):
            try:
                torch.ops.load_library(str(path))
                return True
            except OSError:
                return False
    return False


def _declare_torchvision_ops() -> None:
    if _TORCHVISION_SHIM or _torchvision_extension_loads():
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SHIM.append(lib)


def load() -> str:
    """Import pytorch-widedeep (with the torchvision shim); its version."""
    _declare_torchvision_ops()
    import pytorch_widedeep

    return str(pytorch_widedeep.__version__)


class Row:
    """Builds the model and its Trainer; ``train`` runs one epoch of ``Trainer.fit``."""

    def __init__(self, data: dict[str, np.ndarray], cards: list[int], settings: dict[str, Any]):
        load()
        from pytorch_widedeep import Trainer
        from pytorch_widedeep.models import TabMlp, Wide, WideDeep

        dense_names, cat_names = field_names(data["dense"].shape[1], len(cards))
        ids = data["categorical"]
        # WidePreprocessor's layout: every (field, value) one global index, 0 kept for padding.
        starts = np.concatenate([[0], np.cumsum(cards)[:-1]])
        self.x_wide = (ids + starts + 1).astype(np.int64)
        # TabPreprocessor's layout: categorical columns first, then the continuous ones.
        self.x_tab = np.hstack([ids.astype(np.float32), data["dense"]])
        self.target = data["label"]
        column_idx = {name: i for i, name in enumerate([*cat_names, *dense_names])}
        deep = TabMlp(
            column_idx=column_idx,
            cat_embed_input=[
                (name, card, settings["embed_dim"])
                for name, card in zip(cat_names, cards, strict=True)
            ],
            continuous_cols=dense_names,
            mlp_hidden_dims=list(settings["hidden"]),
            mlp_activation="relu",
            mlp_dropout=0.0,  # its default is 0.1; the benchmark's model has no dropout
        )
        wide = Wide(input_dim=int(self.x_wide.max()), pred_dim=1)
        self.model = WideDeep(wide=wide, deeptabular=deep)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["lr"])
        # Its DataLoader workers default to os.cpu_count(); --peer-workers overrides that.
        workers = settings.get("peer_workers")
        self.trainer = Trainer(
            self.model,
            objective="binary",
            optimizers=self.optimizer,
            verbose=0,
            **({} if workers is None else {"num_workers": workers}),
        )
        self.settings = settings

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def train(self, rows: int, on_step: Callable[[], None]) -> None:
        time_optimizer_steps(self.optimizer, on_step)
        self.trainer.fit(
            X_wide=self.x_wide[:rows],
            X_tab=self.x_tab[:rows],
            target=self.target[:rows],
            n_epochs=1,
            batch_size=self.settings["batch_size"],
        )

    def predict(self, rows: int) -> None:
        # After fit, the Trainer keeps fit's batch size and ignores predict's `batch_size`.
        self.trainer.batch_size = self.settings["eval_batch_size"]
        self.trainer.predict_proba(X_wide=self.x_wide[:rows], X_tab=self.x_tab[:rows])
