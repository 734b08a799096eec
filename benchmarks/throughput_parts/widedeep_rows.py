"""The widedeep rows: widedeep-train's config and module under a Lightning Trainer."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .data import cardinalities
from .measure import StepClock, synchronizer, time_inference
from .spec import NUM_DENSE, WIDEDEEP_BASE, RowSpec, Settings

# -- widedeep rows -------------------------------------------------------------------------------


def widedeep_config(spec: RowSpec) -> Any:
    """The config ``widedeep-train`` would run with these overrides, validated like it."""
    from widedeep.cli.config import compose_config
    from widedeep.training.run import validate

    cfg = compose_config([*WIDEDEEP_BASE, *spec.overrides])
    validate(cfg)
    return cfg


def lightning_timer(clock: StepClock, device: str = "cpu") -> Any:
    """A Lightning callback that feeds ``clock``: the end of every batch, and the time inside
    the module's forward, the backward and every optimizer's step (torch hooks), so that the
    rest of a step (data, loss, logging, Lightning's loop) is what remains."""
    import pytorch_lightning as pl

    sync = synchronizer(device)

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.parts = [0.0, 0.0, 0.0]
            self.started = [0.0, 0.0, 0.0]

        def _start(self, k: int) -> None:
            self.started[k] = time.perf_counter()

        def _stop(self, k: int) -> None:
            sync()
            self.parts[k] += time.perf_counter() - self.started[k]

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            pl_module.register_forward_pre_hook(lambda *_: self._start(0))
            pl_module.register_forward_hook(lambda *_: self._stop(0))
            for opt in trainer.optimizers:
                opt.register_step_pre_hook(lambda *_: self._start(2))
                opt.register_step_post_hook(lambda *_: self._stop(2))

        def on_before_backward(self, *_: Any) -> None:
            self._start(1)

        def on_after_backward(self, *_: Any) -> None:
            self._stop(1)

        def on_train_batch_end(self, *_: Any) -> None:
            sync()
            clock.step_done((self.parts[0], self.parts[1], self.parts[2]))
            self.parts = [0.0, 0.0, 0.0]

    return Timer()


def run_widedeep(
    spec: RowSpec, data: dict[str, np.ndarray], s: Settings, clock: StepClock
) -> tuple[dict[str, Any], int]:
    """widedeep's WideDeepModule under a Lightning Trainer, fed by its BatchLoader."""
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from widedeep import BatchLoader, CategoricalField, ColumnarData, Schema, keep_freed_memory
    from widedeep.training.compiled import compile_model
    from widedeep.training.module import WideDeepModule
    from widedeep.training.predict import predict_split

    keep_freed_memory()  # as widedeep-train and widedeep-predict do at start

    cfg = widedeep_config(spec)
    schema = Schema(
        dense=tuple(f"I{j + 1}" for j in range(NUM_DENSE)),
        categorical=tuple(
            CategoricalField(f"C{j + 1}", card) for j, card in enumerate(cardinalities())
        ),
    )

    def columns(rows: int) -> ColumnarData:
        return ColumnarData(
            dense=torch.from_numpy(data["dense"][:rows]),
            categorical=torch.from_numpy(data["categorical"][:rows]),
            crosses=torch.zeros(rows, 0, dtype=torch.long),
            label=torch.from_numpy(data["label"][:rows]),
        )

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    pl.seed_everything(s.seed, verbose=False)
    module = WideDeepModule(
        schema=schema.to_dict(),
        kind=model_cfg["kind"],
        wide=model_cfg["wide"],
        deep=model_cfg["deep"],
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
    )
    train_rows = clock.rows
    gpu = s.device != "cpu"
    loader = BatchLoader(
        columns(train_rows), s.batch_size, shuffle=True, seed=s.seed, pin_memory=gpu
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lightning_timer(clock, s.device)],
    )
    compiled = compile_model(module.model) if cfg.trainer.compile else None
    trainer.fit(module, train_dataloaders=loader)
    rows = s.infer_rows or len(data["label"])
    full = columns(rows)

    bf16 = cfg.trainer.precision == "bf16-mixed"

    module.model.to(s.device)  # Lightning hands the model back on the CPU after fit
    sync = synchronizer(s.device)

    def predict(n: int) -> None:
        # A compiled row scores compiled too: its batch dimension is dynamic, so the eval batch
        # compiles once, in the warm-up batch of time_inference.
        with torch.autocast("cuda" if gpu else "cpu", dtype=torch.bfloat16, enabled=bf16):
            predict_split(module.model, full if n == rows else columns(n), s.eval_batch_size)
        sync()

    inference = time_inference(predict, rows, s.eval_batch_size, s.infer_passes)
    clock.row_info["precision"] = cfg.trainer.precision
    if compiled is not None:  # compile time apart from the steady state
        clock.row_info["compile"] = compiled.to_dict()
    params = sum(p.numel() for p in module.model.parameters())
    return inference, params
