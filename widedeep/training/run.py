"""``train(cfg)``: train one model as configured and write its outputs (metrics.json,
predictions.parquet, checkpoints, the fitted preprocessor). Pure: no Hydra, no command
line; `widedeep.cli.train` is the thin ``@hydra.main`` around it.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars
from omegaconf import DictConfig, OmegaConf

from widedeep.core.io import atomic_write, write_json
from widedeep.core.suggest import did_you_mean, unknown_choice

log = logging.getLogger("widedeep")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key."""


class Preempted(RuntimeError):
    """Training stopped on SIGTERM (a scheduler's preemption); ``checkpoint`` (last.ckpt) holds
    the state to resume from. The command line exits with `EXIT_CODE` (128 + SIGTERM)."""

    EXIT_CODE = 143

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


LOGGERS = ("csv", "tensorboard", "mlflow", "none")
SOME_BATCHES = (
    "must be a number of batches (an int >= 1) or a fraction of them in (0, 1]; with no batch "
    "nothing trains and no checkpoint is written (trainer.max_epochs=1 makes a short run)"
)
MONITORS = ("auc", "auc_minus_logloss")
PLATEAU_KEYS = ("factor", "min_lr", "min_delta")


def _check(
    cfg: DictConfig, key: str, kind: type | tuple[type, ...], test=None, need: str = ""
) -> None:
    """``key``'s value is a ``kind`` (for the nodes the schema leaves open) passing ``test``."""
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{key}={value!r}: expected {names}")
    if test is not None and not test(value):
        raise ConfigError(f"{key}={value!r}: {need}")


def _some_batches(value: int | float) -> bool:
    return value >= 1 if isinstance(value, int) else 0 < value <= 1


def _range(cfg: DictConfig, key: str, test, need: str) -> None:
    """``key``'s value passes ``test`` (its type is the schema's, widedeep/conf/schema.py)."""
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    if not test(value):
        raise ConfigError(f"{key}={value!r}: {need}")


def _choose(cfg: DictConfig, key: str, valid) -> None:
    problem = unknown_choice(key, OmegaConf.select(cfg, key, throw_on_missing=True), valid)
    if problem:
        raise ConfigError(problem)


def _keys(where: str, given, valid) -> None:
    """Every key of an open node (``given``) is one of ``valid``."""
    for key in given:
        if key not in valid:
            raise ConfigError(
                f"{where}.{key}: no such key{did_you_mean(str(key), valid)}; "
                f"{where} takes {', '.join(sorted(valid))}"
            )


def validate(cfg: DictConfig, sweep: bool = False) -> None:
    """Catch wrong values and names before minutes of data loading, with the key's name.
    The schema (widedeep/conf/schema.py) has checked the keys and the types of a composed
    config; this checks ranges, choices, the open nodes and what depends on several keys.
    ``sweep``: the process runs a job of a local Hydra sweep (see `distributed.check`)."""
    from widedeep.data.checks import check_data_names
    from widedeep.nn.build import KINDS
    from widedeep.nn.deep import ACTIVATIONS
    from widedeep.training import distributed
    from widedeep.training.datamodule import LOADERS

    positive = (lambda v: v > 0, "must be > 0")
    at_least_0 = (lambda v: v >= 0, "must be >= 0")
    _check(cfg, "seed", int)  # the root has no schema (see widedeep/conf/schema.py)
    try:
        check_data_names(cfg.data)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _range(cfg, "data.batch_size", *positive)
    _range(cfg, "data.eval_batch_size", *positive)
    _choose(cfg, "model.kind", KINDS)
    _choose(cfg, "model.deep.activation", ACTIVATIONS)
    _range(cfg, "model.deep.embedding_dim", *positive)
    _range(cfg, "model.deep.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)")
    hidden = cfg.model.deep.hidden
    if not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError(f"model.deep.hidden={hidden}: expected a list of positive ints")
    _validate_selection(cfg)
    _validate_stagewise(cfg)
    _range(cfg, "trainer.max_epochs", *positive)
    _check(cfg, "trainer.limit_train_batches", (int, float), _some_batches, SOME_BATCHES)
    _range(cfg, "trainer.patience", *at_least_0)
    _choose(cfg, "trainer.monitor", MONITORS)
    plateau = cfg.trainer.get("reduce_lr_on_plateau")
    if plateau is not None:
        if not OmegaConf.is_dict(plateau):
            raise ConfigError(
                f"trainer.reduce_lr_on_plateau={plateau}: expected null or "
                "{factor: 0.1, min_lr: 1e-6, min_delta: 1e-6} (each optional)"
            )
        _keys("trainer.reduce_lr_on_plateau", plateau, PLATEAU_KEYS)
        bounds = {"factor": (lambda v: 0 < v < 1, "must be in (0, 1)")}
        for key in plateau:
            test, need = bounds.get(key, at_least_0)
            _check(cfg, f"trainer.reduce_lr_on_plateau.{key}", (int, float), test, need)
    _choose(cfg, "trainer.logger", LOGGERS)
    _check_precision(cfg)
    _range(cfg, "trainer.num_nodes", *positive)
    _choose(cfg, "trainer.loader", LOADERS)
    _range(cfg, "trainer.shuffle_buffer", *at_least_0)
    _range(cfg, "trainer.loader_workers", *at_least_0)
    divergence = cfg.trainer.get("divergence")
    if divergence is not None and divergence.get("factor") is not None:
        _range(cfg, "trainer.divergence.factor", lambda v: v > 1, "must be > 1 (or null: off)")
        _range(cfg, "trainer.divergence.window", *positive)
    problem = distributed.check(cfg, sweep)
    if problem:
        raise ConfigError(problem)
    _validate_optim(cfg)


PRECISIONS = ("32-true", "32", "64-true", "bf16-mixed", "16-mixed")


def _check_precision(cfg: DictConfig) -> None:
    """``trainer.precision``: one Lightning knows; bf16 on a CPU without bf16 instructions
    works (emulated) but is slower than fp32, so it warns in one line, naming the CPU."""
    from widedeep.core.cpu import cpu_has_bf16, cpu_name

    _choose(cfg, "trainer.precision", PRECISIONS)
    precision, accelerator = cfg.trainer.precision, cfg.trainer.accelerator
    if precision == "bf16-mixed" and accelerator == "cpu" and not cpu_has_bf16():
        log.warning(
            "trainer.precision=bf16-mixed: this CPU (%s) has neither avx512_bf16 nor AMX, so "
            "bf16 is emulated and slower than trainer.precision=32-true",
            cpu_name(),
        )
    if precision == "16-mixed" and accelerator == "cpu":
        raise ConfigError(
            "trainer.precision=16-mixed: fp16 needs a GPU (trainer.accelerator=gpu); on a CPU "
            "use bf16-mixed"
        )


def _validate_optim(cfg: DictConfig) -> None:
    """Each tower's optimizer and the scheduler: known names, and only the settings their own
    signatures take (the schema leaves these nodes open: the settings depend on the name)."""
    import inspect

    from widedeep.optim.factory import OPTIMIZERS, SCHEDULERS
    from widedeep.training.module import DENSE_ONLY

    def takes(cls: type, *extra: str) -> set[str]:
        params = inspect.signature(cls.__init__).parameters
        return {*params} - {"self", "params", "optimizer", "args", "kwargs"} | {*extra}

    for tower in ("wide", "deep"):
        settings = cfg.optim[tower]
        _choose(cfg, f"optim.{tower}.name", OPTIMIZERS)
        _check(cfg, f"optim.{tower}.lr", (int, float), lambda v: v > 0, "must be > 0")
        # lr: FTRL's alpha (the factory renames it); embedding_l2: the factory's own penalty;
        # sparse_adam passes Adam's own options to the Adam of the tower's dense parameters
        dense_only = DENSE_ONLY if settings.name == "sparse_adam" else ()
        _keys(
            f"optim.{tower}",
            settings,
            takes(OPTIMIZERS[settings.name], "name", "lr", "embedding_l2", *dense_only),
        )
    scheduler = cfg.optim.get("scheduler")
    if scheduler is not None and scheduler.get("name"):
        _choose(cfg, "optim.scheduler.name", SCHEDULERS)
        _keys("optim.scheduler", scheduler, takes(SCHEDULERS[scheduler.name], "name"))


def _validate_selection(cfg: DictConfig) -> None:
    """``data.selection``: null or {ratio in (0, 1), seed >= 0 (optional, 0)}."""
    selection = cfg.data.get("selection")
    if selection is None:
        return
    if not OmegaConf.is_dict(selection):
        raise ConfigError(f"data.selection={selection}: expected null or {{ratio: 0.5, seed: 0}}")
    _keys("data.selection", selection, ("ratio", "seed"))
    _check(cfg, "data.selection.ratio", (int, float), lambda v: 0 < v < 1, "must be in (0, 1)")
    if selection.get("seed") is not None:
        _check(cfg, "data.selection.seed", int, lambda v: v >= 0, "must be >= 0")


def _validate_stagewise(cfg: DictConfig) -> None:
    """``model.frozen`` (null, wide, deep) with ``model.kind=wide_deep`` and ``model.init_from``
    (a path, or a warm start's {wide, deep}), and the joint objectives (training/joint.py)."""
    from widedeep.training.joint import JointSettings

    try:
        JointSettings.from_config(OmegaConf.to_container(cfg.model, resolve=True))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    frozen, init_from = cfg.model.get("frozen"), cfg.model.get("init_from")
    if OmegaConf.is_dict(init_from) or isinstance(init_from, dict):
        _validate_warm(cfg, frozen, init_from)
        return
    if frozen is None:
        if init_from is not None:
            raise ConfigError(
                f"model.init_from={init_from!r}: only used with model.frozen=wide or deep"
            )
        return
    _choose(cfg, "model.frozen", ("wide", "deep"))
    if cfg.model.kind != "wide_deep":
        raise ConfigError(
            f"model.frozen={frozen!r}: needs model.kind=wide_deep (got {cfg.model.kind!r}); a "
            "frozen tower is the fixed offset the other tower trains on"
        )
    if not isinstance(init_from, str) or not init_from:
        raise ConfigError(
            f"model.init_from={init_from!r}: model.frozen={frozen} needs the checkpoint "
            f"(a run's checkpoints/best.ckpt) to take the {frozen} tower from"
        )


def _validate_warm(cfg: DictConfig, frozen: Any, init_from: Any) -> None:
    """``model.init_from={wide: <run>, deep: <run>}``: the warm start of joint fine-tuning."""
    if frozen is not None:
        raise ConfigError(
            f"model.init_from={dict(init_from)}: both towers warm-started, none frozen; "
            "model.frozen takes one checkpoint path"
        )
    if cfg.model.kind != "wide_deep":
        raise ConfigError("model.init_from: a warm start needs model.kind=wide_deep")
    _keys("model.init_from", init_from, ("wide", "deep"))
    for tower in ("wide", "deep"):
        value = init_from.get(tower)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"model.init_from.{tower}={value!r}: expected the run (or its checkpoint) to "
                f"take the {tower} tower from"
            )


def _logger(cfg: DictConfig, out: Path) -> Any:
    from importlib.util import find_spec

    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from widedeep.training import tracking

    kind = cfg.trainer.logger
    if kind == "csv":
        return CSVLogger(out, name="logs", version="")
    if kind == "tensorboard":
        return TensorBoardLogger(out, name="logs", version="")
    if kind == "mlflow":
        if find_spec("mlflow") is None:
            raise ConfigError(f"trainer.logger=mlflow: MLflow is not installed; {tracking.INSTALL}")
        return tracking.mlflow_logger(cfg, out)
    return False


def _uses_gpu(trainer: DictConfig) -> bool:
    """Whether the run trains on CUDA GPUs (its batches are then pinned)."""
    import torch

    accelerator = str(trainer.accelerator)
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _progress_bar(setting: object) -> bool:
    """``trainer.progress_bar``: ``auto`` shows Lightning's bar only when stdout is a terminal
    (redirected to a file, its redraws would fill it); true or false as said."""
    if setting == "auto":
        return sys.stdout.isatty()
    if isinstance(setting, bool):
        return setting
    raise ConfigError(f"trainer.progress_bar={setting!r}: must be auto, true or false")


@contextmanager
def _preemptible(trainer: Any, latest: Any) -> Iterator[None]:
    """Lightning's bare SystemExit on SIGTERM (exit status 0) turned into `Preempted`."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException:
        path = Path(latest.format_checkpoint_name({}))
        if latest.saved_at is not None:
            held = f"training batch {latest.saved_at} (saved by this run)"
        else:
            held = "its last save before this run" if path.exists() else "nothing: no file yet"
        raise Preempted(
            f"stopped by SIGTERM after training batch "
            f"{trainer.fit_loop.epoch_loop.total_batch_idx + 1} (epoch {trainer.current_epoch}); "
            f"{path} holds the state to resume from, at {held}: rerun with the same overrides "
            f"plus resume_from={path}",
            path,
        ) from None


def train(cfg: DictConfig, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train one model as configured; write its outputs under ``cfg.output_dir``; return metrics.

    ``extra_callbacks``: more Lightning callbacks for this run (e.g. a tuner's pruning callback)."""
    from widedeep.training.console import quiet_lightning

    # Lightning prints its noise at every stage: fit, validate and test.
    with quiet_lightning():
        return _train(cfg, extra_callbacks)


def _train(cfg: DictConfig, extra_callbacks: Sequence[Any]) -> dict[str, Any]:
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from widedeep.data.checks import (
        check_split_rows,
        check_train_batches,
        constant_fields,
        split_rows,
    )
    from widedeep.data.selection import SELECTION_SPLIT
    from widedeep.training import distributed
    from widedeep.training.callbacks import (
        DistributedSigterm,
        LatestCheckpoint,
        ReduceLROnPlateau,
    )
    from widedeep.training.checkpoint import load_checkpoint
    from widedeep.training.checkpoint_io import (
        AtomicCheckpointIO,
        check_writable,
        remove_stale_temporaries,
    )
    from widedeep.training.compiled import compile_model
    from widedeep.training.console import ValidationLine
    from widedeep.training.datamodule import WideDeepDataModule
    from widedeep.training.joint import JointSettings
    from widedeep.training.module import DivergenceWatch, WideDeepModule
    from widedeep.training.predict import predict_split, split_scores
    from widedeep.training.resume import check_resume
    from widedeep.training.stagewise import load_frozen_tower, read_members, read_source, warm_start
    from widedeep.training.tracking import log_artifacts

    validate(cfg)
    # A bad resume or init_from file fails here, in one line, before minutes of data loading;
    # so does a checkpoint of another dataset, model or optimizer.
    resume = check_resume(cfg.get("resume_from"), cfg)
    frozen = cfg.model.get("frozen")
    source = read_source(cfg.model.init_from, frozen) if frozen else None
    init_from = cfg.model.get("init_from")
    warm = OmegaConf.to_container(init_from) if OmegaConf.is_dict(init_from) else None
    members = read_members(warm) if warm else None
    started = time.perf_counter()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    show_bar = _progress_bar(cfg.trainer.progress_bar)
    logger = _logger(cfg, out)  # before data loading: a missing MLflow fails in the first second
    # Under DDP every rank runs this function; only global rank 0 writes files.
    zero = distributed.launched_as_rank_zero()
    if zero:
        # A killed save's temporary goes; a read-only folder fails now, not after training.
        remove_stale_temporaries(out / "checkpoints")
        check_writable(out / "checkpoints")
        atomic_write(out / "config.yaml", lambda p: OmegaConf.save(cfg, p, resolve=True))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    dm = WideDeepDataModule(
        data_cfg,
        cfg.data.batch_size,
        cfg.data.eval_batch_size,
        cfg.seed,
        loader=cfg.trainer.loader,
        shuffle_buffer=cfg.trainer.shuffle_buffer,
        loader_workers=cfg.trainer.loader_workers,
        pin_memory=_uses_gpu(cfg.trainer),
    )
    dm.setup()
    check_split_rows(dm.data, data_cfg)  # before Lightning fails on a missing val/auc
    try:
        check_train_batches(
            split_rows(dm.data)["train"],
            cfg.data.batch_size,
            cfg.trainer.limit_train_batches,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
    resume.check_schema(dm.data.schema)  # the vocabulary sizes: known now, before training
    constant = constant_fields(dm.data)
    if constant:  # e.g. an hour-of-day field on one hour of rows
        log.warning("dataset %r: constant on every training row: %s", cfg.data.name, constant)
    # The fitted preprocessing beside the checkpoint: widedeep-predict encodes raw rows with it.
    if zero:
        dm.data.preprocessor.save(out / "preprocessor")
    data_time = time.perf_counter() - started
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    module = WideDeepModule(
        schema=dm.data.schema.to_dict(),
        kind=model_cfg["kind"],
        wide=model_cfg["wide"],
        deep=model_cfg["deep"],
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        frozen=frozen,
        joint=JointSettings.from_config(model_cfg).to_dict(),
    )
    divergence = cfg.trainer.get("divergence")
    if divergence is not None and divergence.get("factor") is not None:
        module.divergence = DivergenceWatch(divergence.factor, divergence.window)
    stagewise = None
    if source is not None:  # on resume, fit() then restores the same weights from the run
        stagewise = load_frozen_tower(
            module.model, frozen, source, dm.data.schema, model_cfg[frozen], cfg.model.init_from
        )
    if members is not None:  # likewise: a resumed run continues from its own weights
        stagewise = warm_start(module.model, members, dm.data.schema, model_cfg, warm)
    compiled = compile_model(module.model) if cfg.trainer.get("compile") else None
    monitor = f"val/{cfg.trainer.monitor}"
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="max",
        enable_version_counter=False,
    )
    # A separate callback for the latest state: Lightning's save_last only writes when the
    # monitored metric improved, and resuming needs the latest epoch, improved or not.
    # Also every trainer.checkpoint_every_n_steps batches, so a run killed mid-epoch resumes.
    latest = LatestCheckpoint(out / "checkpoints", cfg.trainer.get("checkpoint_every_n_steps"))
    stopping = EarlyStopping(
        monitor=monitor,
        mode="max",
        patience=cfg.trainer.patience,
        min_delta=cfg.trainer.min_delta,
    )
    callbacks = [checkpoint, latest, stopping, ValidationLine(), DistributedSigterm()]
    callbacks += extra_callbacks
    plateau = cfg.trainer.get("reduce_lr_on_plateau")
    if plateau:
        callbacks.append(ReduceLROnPlateau(monitor, **OmegaConf.to_container(plateau)))
    trainer = pl.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=distributed.build_strategy(cfg.trainer),
        precision=cfg.trainer.precision,
        deterministic=cfg.trainer.deterministic,
        limit_train_batches=cfg.trainer.limit_train_batches,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=show_bar,
        enable_model_summary=False,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=out,
        plugins=[AtomicCheckpointIO()],  # every save atomic, on any filesystem
    )
    fit_start = time.perf_counter()
    with warnings.catch_warnings():
        if frozen or module.joint.staged:  # the frozen or paused tower's eval mode, by design
            warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
        with _preemptible(trainer, latest):
            trainer.fit(module, datamodule=dm, ckpt_path=resume.path, weights_only=True)
    fit_time = time.perf_counter() - fit_start

    # Everything below uses the best validation-AUC weights, not the last epoch's.
    best = load_checkpoint(checkpoint.best_model_path, "weights")
    module.load_state_dict(best["state_dict"])
    with _preemptible(trainer, latest):
        val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        test = trainer.test(module, datamodule=dm, verbose=False)[0]
    # Every evaluation split: valid (part A under data.selection), valid_b (part B), test.
    splits = [s for s in ("valid", SELECTION_SPLIT, "test") if s in dm.data.splits]
    val_b = None
    # The saved predictions in the number format the evaluation ran in (trainer.precision).
    bf16 = cfg.trainer.precision == "bf16-mixed"
    device = "cuda" if trainer.strategy.root_device.type == "cuda" else "cpu"
    if trainer.is_global_zero:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            predictions = {
                split: predict_split(
                    module.model, dm.data.splits[split], cfg.data.eval_batch_size
                ).with_columns(polars.lit(split).alias("split"))
                for split in splits
            }
        frame = polars.concat(list(predictions.values()))
        atomic_write(out / "predictions.parquet", frame.write_parquet)
        if SELECTION_SPLIT in predictions:
            val_b = split_scores(predictions[SELECTION_SPLIT])

    metrics = {
        "dataset": cfg.data.name,
        "kind": cfg.model.kind,
        "seed": cfg.seed,
        "val": {"auc": val["val/auc"], "logloss": val["val/logloss"]},
        "test": {"auc": test["test/auc"], "logloss": test["test/logloss"]},
        # data.selection: {ratio, seed, rows: {valid, valid_b}} and part B's scores, else null.
        "selection": dm.data.info.get("selection"),
        "val_b": val_b,
        # model.frozen: {frozen, init_from, source_kind}; a warm start: {init_from, biases}.
        "stagewise": stagewise,
        "params": module.parameter_counts(),
        "epochs": trainer.current_epoch,
        "best_epoch": int(best["epoch"]),
        "rows": dm.data.info["rows"],
        "wall_time_s": time.perf_counter() - started,
        "data_time_s": data_time,
        "fit_time_s": fit_time,
        "optimizer_step_time_s": module.train_time,
        # trainer.compile: graphs compiled, their compile time (inside fit_time_s and the
        # first steps' optimizer_step_time_s), and why it fell back to eager if it did.
        "compile": compiled.to_dict() if compiled is not None else None,
        "best_checkpoint": str(checkpoint.best_model_path),
    }
    if trainer.is_global_zero:  # the other ranks' metrics are the same, synced values
        write_json(out / "metrics.json", metrics)
        log_artifacts(trainer.logger, [out / "config.yaml", out / "metrics.json"])
        log.info(
            "%s on %s: test AUC %.4f, log loss %.4f (%s)",
            cfg.model.kind,
            cfg.data.name,
            metrics["test"]["auc"],
            metrics["test"]["logloss"],
            out,
        )
    return metrics
