"""The schema of the config tree: one dataclass per node whose keys are known, registered in
Hydra's ConfigStore (`register`, run when Hydra imports this package). Each group file names its
schema first in its defaults list (``- /schema/trainer@_here_``), so Hydra type-checks every
value as it composes and refuses a misspelled ``key=value``; a key added with ``+`` (which Hydra
lets into any node) is refused after composition by `widedeep.cli.keys`.

The YAML files hold the values (and their comments); the schema holds only types, so nearly
every field is MISSING here. Open nodes (``dict[str, Any]``), and why they must be:

- ``optim.wide`` / ``optim.deep`` / ``optim.scheduler``: the settings depend on the chosen
  name (FTRL has l1, Adam betas); `widedeep.training.run.validate` checks them against the
  optimizer's or scheduler's own signature.
- ``data.features.crosses`` items (fields, hashed, num_buckets, min_count, name: checked
  against `widedeep.data.preprocess.CrossSpec`); ``trainer.reduce_lr_on_plateau`` (each key
  optional with the callback's default) and ``data.selection`` (ratio, seed): null or a
  mapping, typed Any because OmegaConf 2.3 cannot merge a mapping into a null dataclass or
  dict field; `validate` checks their keys.
- maps keyed by names, not by the schema: ``model.deep.embedding_dims`` (fields),
  ``data.features.min_counts`` (fields), ``bench.sweep.*.overrides`` (config keys, checked by
  the harness), ``tune.space`` / ``bench.tune.space`` (config keys, parsed by the tuner).
- the root: the three apps share train.yaml and add their own top node (bench, tune), and
  Hydra cannot merge a parent-class schema into a subclass-typed root, so the root's keys are
  checked by `widedeep.cli.keys.ROOT_KEYS`.

Adding a dataset (e.g. ``data=table``): write its dataclass below (a subclass of `Data`, its
own ``files`` and ``split``), add it to `DATASETS` under its ``name``, and start
``conf/data/<name>.yaml`` with ``defaults: [/schema/data/<name>@_here_, _self_]``.
tests/test_schema.py composes every data option and fails on one without a schema.
"""

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class Selection:
    ratio: float = MISSING
    seed: int = MISSING


@dataclass
class Features:
    categorical: list[str] = MISSING
    dense: list[str] = MISSING
    bags: list[str] = MISSING
    crosses: list[Any] = MISSING
    min_count: int = MISSING
    min_counts: dict[str, int] = field(default_factory=dict)
    dense_transform: str = MISSING
    discretize: list[str] = MISSING
    label: str = "label"


@dataclass
class Ratios:
    train: float = MISSING
    valid: float = MISSING
    test: float = MISSING


@dataclass
class ShippedSplit:
    method: str = MISSING


@dataclass
class RandomSplit(ShippedSplit):
    ratios: Ratios = field(default_factory=Ratios)
    seed: int = MISSING


@dataclass
class TimedSplit(RandomSplit):
    """Random, or ``method: time`` on ``column`` (oldest rows train, newest test)."""

    column: str = MISSING


@dataclass
class ValidShareSplit(ShippedSplit):
    """Shipped train / test; valid a seeded ``valid_ratio`` share of train."""

    valid_ratio: float = MISSING
    seed: int = MISSING


@dataclass
class Data:
    """The keys of every dataset (train.yaml sets ``selection``)."""

    name: str = MISSING
    root: str | None = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    features: Features = field(default_factory=Features)
    selection: Any = None  # null or {ratio, seed (optional)}: see the module docstring
    cache: bool | None = None  # null: on for file datasets
    cache_dir: str | None = None  # null: $WIDEDEEP_CACHE_DIR, else ~/.cache/widedeep
    cache_verify: str = "size"  # or content: hash inputs over 8 MiB whole (widedeep.data.cache)


@dataclass
class Generator:
    """`widedeep.data.readers.synthetic.SyntheticConfig`'s fields."""

    n_rows: int = MISSING
    n_users: int = MISSING
    n_items: int = MISSING
    n_categories: int = MISSING
    latent_dim: int = MISSING
    affinity_scale: float = MISSING
    n_exceptions: int = MISSING
    exception_share: float = MISSING
    exception_zipf: float = MISSING
    exception_effect: float = MISSING
    zipf_exponent: float = MISSING
    base_logit: float = MISSING
    seed: int = MISSING


@dataclass
class SyntheticData(Data):
    generator: Generator = field(default_factory=Generator)
    split: RandomSplit = field(default_factory=RandomSplit)
    keep_columns: list[str] = MISSING


@dataclass
class FileData(Data):
    on_bad_rows: str = MISSING


@dataclass
class TrainFile:
    train: str = MISSING


@dataclass
class CriteoData(FileData):
    files: TrainFile = field(default_factory=TrainFile)
    split: RandomSplit = field(default_factory=RandomSplit)


@dataclass
class AvazuData(FileData):
    files: TrainFile = field(default_factory=TrainFile)
    split: TimedSplit = field(default_factory=TimedSplit)


@dataclass
class LibfmFiles:
    train: str = MISSING
    valid: str = MISSING
    test: str = MISSING
    feature_map: str = MISSING


@dataclass
class FrappeData(FileData):
    files: LibfmFiles = field(default_factory=LibfmFiles)
    split: ShippedSplit = field(default_factory=ShippedSplit)


@dataclass
class MovielensFiles:
    ratings: str = MISSING
    items: str = MISSING
    users: str = MISSING


@dataclass
class MovielensData(FileData):
    files: MovielensFiles = field(default_factory=MovielensFiles)
    split: TimedSplit = field(default_factory=TimedSplit)


@dataclass
class AdultFiles:
    train: str = MISSING
    test: str = MISSING


@dataclass
class AdultData(FileData):
    files: AdultFiles = field(default_factory=AdultFiles)
    split: ValidShareSplit = field(default_factory=ValidShareSplit)


@dataclass
class TableLabel:
    column: str = MISSING
    positive: Any = None  # a value or a list of values
    threshold: float | None = None


@dataclass
class TableSplit(TimedSplit):
    """Random or time, as `TimedSplit`; with given split files, ``valid_ratio`` of train."""

    valid_ratio: float = MISSING


@dataclass
class TableData(FileData):
    """A user's own table (`widedeep.data.readers.table`)."""

    files: Any = None  # a path, a glob, a list of them, or {train, valid, test}
    format: str = MISSING
    separator: str | None = None
    header: bool = MISSING
    columns: list[str] | None = None
    null_values: list[str] = MISSING
    bag_separator: str = MISSING
    label: TableLabel = field(default_factory=TableLabel)
    split: TableSplit = field(default_factory=TableSplit)
    keep_columns: list[str] = MISSING


# Each data option's schema, by its ``name``: conf/data/<name>.yaml names /schema/data/<name>.
DATASETS: dict[str, type[Data]] = {
    "synthetic": SyntheticData,
    "criteo": CriteoData,
    "avazu": AvazuData,
    "frappe": FrappeData,
    "movielens": MovielensData,
    "adult": AdultData,
    "table": TableData,
}


@dataclass
class WideTower:
    use_dense: bool = MISSING
    sparse_min_rows: int | None = MISSING


@dataclass
class DeepTower:
    embedding_dim: int = MISSING
    embedding_dims: dict[str, int] = MISSING
    hidden: list[int] = MISSING
    activation: str = MISSING
    dropout: float = MISSING
    batch_norm: bool = MISSING
    sparse_min_rows: int | None = MISSING


@dataclass
class Model:
    kind: str = MISSING
    frozen: str | None = MISSING
    init_from: Any = MISSING  # null, a checkpoint path (frozen) or {wide: run, deep: run}
    # The joint objectives (widedeep/training/joint.py); their defaults are off.
    tower_dropout: float = 0.0
    aux_loss: float = 0.0
    combine: bool = False
    finetune: Any = None  # null or {lr_scale: float, hold: {wide: epochs, deep: epochs}}
    tower_stop: Any = None  # null or {patience: int, min_delta: float}
    wide: WideTower = field(default_factory=WideTower)
    deep: DeepTower = field(default_factory=DeepTower)


@dataclass
class Optim:
    wide: dict[str, Any] = MISSING
    deep: dict[str, Any] = MISSING
    grad_clip: float | None = MISSING
    scheduler: Any = MISSING  # null or a mapping (see Data.selection)


@dataclass
class Mlflow:
    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None


@dataclass
class Divergence:
    factor: float | None = MISSING  # null: off
    window: int = MISSING


@dataclass
class Trainer:
    max_epochs: int = MISSING
    patience: int = MISSING
    min_delta: float = MISSING
    monitor: str = MISSING
    reduce_lr_on_plateau: Any = MISSING  # null or a mapping (see Data.selection)
    accelerator: str = MISSING
    devices: Any = MISSING  # a count, "auto" or a list of device ids (Lightning's)
    precision: str = MISSING
    compile: bool = MISSING
    progress_bar: Any = MISSING  # auto | true | false (a string or a bool)
    logger: str = MISSING
    mlflow: Mlflow = field(default_factory=lambda: Mlflow())
    log_every_n_steps: int = MISSING
    limit_train_batches: Any = MISSING  # a fraction (float) or a number of batches (int)
    checkpoint_every_n_steps: int | None = MISSING
    divergence: Divergence = field(default_factory=Divergence)
    deterministic: bool = MISSING
    strategy: str = MISSING
    num_nodes: int = MISSING
    process_group_backend: str | None = MISSING
    loader: str = MISSING
    shuffle_buffer: int = MISSING
    loader_workers: int = MISSING


@dataclass
class Sampler:
    seed: int = MISSING


@dataclass
class Tune:
    """widedeep-tune's ``tune`` node (tune_train.yaml plus the tune group's ``space``)."""

    trials: int = MISSING
    n_startup_trials: int = MISSING
    sampler: Sampler = field(default_factory=Sampler)
    pruner: str = MISSING
    storage: str | None = MISSING
    shared: bool = MISSING
    study_name: str = MISSING
    space: dict[str, Any] = MISSING


@dataclass
class BenchTune:
    trials: int = MISSING
    n_startup_trials: int = MISSING
    sampler: Sampler = field(default_factory=Sampler)
    pruner: str = MISSING
    storage: str | None = MISSING
    space: dict[str, Any] = MISSING
    fixed: str | None = None


@dataclass
class Level:
    name: str = MISSING
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sweep:
    wide: list[Level] = MISSING
    deep: list[Level] = MISSING


@dataclass
class MainLevels:
    wide: str = MISSING
    deep: str = MISSING


@dataclass
class Slices:
    fields: list[str] = MISSING
    edges: list[int] = MISSING


@dataclass
class Bench:
    seeds: list[int] = MISSING
    data_seeds: list[int] | None = MISSING
    selection: Selection = field(default_factory=Selection)
    sweep: Sweep = field(default_factory=Sweep)
    main: MainLevels = field(default_factory=MainLevels)
    grid: str = MISSING
    controls: list[str] = MISSING
    objectives: list[str] = field(default_factory=list)
    k_members: int = MISSING
    bootstrap: int = MISSING
    tune: BenchTune = field(default_factory=BenchTune)
    slices: Slices = field(default_factory=Slices)
    store: str = MISSING
    reuse: bool = MISSING
    archive: str | None = None
    out: str = MISSING
    publish: bool = MISSING
    publish_dir: str = MISSING


def register() -> None:
    """Store every schema in Hydra's ConfigStore under ``schema/`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in (
        ("model", Model),
        ("optim", Optim),
        ("trainer", Trainer),
        ("tune", Tune),
        ("bench", Bench),
    ):
        store.store(group="schema", name=name, node=node)
    for name, node in DATASETS.items():
        store.store(group="schema/data", name=name, node=node)
