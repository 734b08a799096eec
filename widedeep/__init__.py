"""widedeep: Wide & Deep recommenders (Cheng et al. 2016) and the joint-vs-ensemble experiment.

The public API is plain PyTorch: nothing here imports Lightning or Hydra.
"""

from .allocator import keep_freed_memory
from .batch import Batch
from .data import BatchLoader, ColumnarData, ProcessedData
from .deep import DeepTower
from .embedding import FieldEmbedding
from .features import BagField, CategoricalField, CrossField, Schema
from .ftrl import FTRL
from .model import TowerLogits, WideDeep
from .preprocess import CrossSpec, FeatureSpec, Preprocessor
from .vocab import Vocabulary
from .wide import WideTower

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
    "Vocabulary",
    "WideDeep",
    "WideTower",
    "keep_freed_memory",
]
__version__ = "0.1.0"
