"""widedeep: Wide & Deep recommenders (Cheng et al. 2016) and the joint-vs-ensemble experiment.

The public API is plain PyTorch (and polars for preprocessing): nothing here imports Lightning
or Hydra (``fit``, the notebook API in `widedeep.api`, loads them when called). Names load on
first use: importing one layer (``widedeep.nn``) imports this package first, and an eager API
would pull polars and the data layer into every one of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "BagField": "widedeep.core.schema",
    "Batch": "widedeep.core.batch",
    "BatchLoader": "widedeep.data.loader",
    "CategoricalField": "widedeep.core.schema",
    "ColumnarData": "widedeep.data.columnar",
    "CrossField": "widedeep.core.schema",
    "CrossSpec": "widedeep.data.preprocess",
    "DeepTower": "widedeep.nn.deep",
    "FTRL": "widedeep.optim.ftrl",
    "FeatureSpec": "widedeep.data.preprocess",
    "FieldEmbedding": "widedeep.nn.embedding",
    "Preprocessor": "widedeep.data.preprocess",
    "ProcessedData": "widedeep.data.columnar",
    "Schema": "widedeep.core.schema",
    "TowerLogits": "widedeep.nn.model",
    "TrainedModel": "widedeep.api",
    "Vocabulary": "widedeep.data.vocab",
    "WideDeep": "widedeep.nn.model",
    "WideTower": "widedeep.nn.wide",
    "fit": "widedeep.api",
    "keep_freed_memory": "widedeep.core.allocator",
    "load_model": "widedeep.api",
}

# Literal, for tools that read it without running this file; the same names as _HOME.
__all__ = [
    "FTRL",
    "BagField",
    "Batch",
    "BatchLoader",
    "CategoricalField",
    "ColumnarData",
    "CrossField",
    "CrossSpec",
    "DeepTower",
    "FeatureSpec",
    "FieldEmbedding",
    "Preprocessor",
    "ProcessedData",
    "Schema",
    "TowerLogits",
    "TrainedModel",
    "Vocabulary",
    "WideDeep",
    "WideTower",
    "fit",
    "keep_freed_memory",
    "load_model",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'widedeep' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from widedeep.api import TrainedModel, fit, load_model
    from widedeep.core.allocator import keep_freed_memory
    from widedeep.core.batch import Batch
    from widedeep.core.schema import BagField, CategoricalField, CrossField, Schema
    from widedeep.data.columnar import ColumnarData, ProcessedData
    from widedeep.data.loader import BatchLoader
    from widedeep.data.preprocess import CrossSpec, FeatureSpec, Preprocessor
    from widedeep.data.vocab import Vocabulary
    from widedeep.nn.deep import DeepTower
    from widedeep.nn.embedding import FieldEmbedding
    from widedeep.nn.model import TowerLogits, WideDeep
    from widedeep.nn.wide import WideTower
    from widedeep.optim.ftrl import FTRL
