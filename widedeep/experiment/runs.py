"""The benchmark's run store: every trained model lives under the hash of what trained it.

A run is reused only when its key matches: the resolved training config (data, model, optim,
trainer, seed, less the keys that change no weight), the widedeep version, a digest of the
source of the layers that train (core, nn, optim, data, training; of the readers, only the
run's own dataset's) and the torch, Lightning,
polars and numpy versions. So a changed setting, a code fix or a library upgrade trains anew,
while a commit that only touches docs or the report keeps every run. The git commit is stored
with each run (provenance), not keyed. A run killed half-way resumes from its last checkpoint.

The archive (``bench.archive``) outlives the store: each finished run is sealed there without
its checkpoints (run.json, metrics.json, the cross-weight counts, the training curve and the
predictions of split B and test: what the report reads), small enough to commit, so that a
later checkout at a commit with the same training code reuses it. A run that another must be
initialised from (stagewise) is retrained into the store when only its sealed copy exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
from omegaconf import DictConfig, OmegaConf

from widedeep.core.io import write_json

log = logging.getLogger("widedeep")
PACKAGE = Path(__file__).resolve().parents[1]
TRAINING_LAYERS = ("core", "nn", "optim", "data", "training")
KEYED = ("data", "model", "optim", "trainer", "seed")
# Keys that change no weight: where files go, what is printed, how evaluation is batched.
UNKEYED = {
    "data": ("cache", "cache_dir", "cache_verify", "eval_batch_size"),
    "trainer": (
        "progress_bar", "logger", "mlflow", "log_every_n_steps", "checkpoint_every_n_steps"
    ),
}
# Model options added after runs were archived, at their "off" values (training/joint.py OFF):
# dropped from the keyed config when off, so that a run that uses none of them keeps its key.
NEW_MODEL_KEYS = {
    "tower_dropout": 0.0,
    "aux_loss": 0.0,
    "combine": False,
    "finetune": None,
    "tower_stop": None,
}
RUN_FILE = "run.json"
SIZES_FILE = "sizes.json"
SEALED_SPLITS = ("valid_b", "test")  # the predictions the report reads (arms.SPLITS)


def digest_files(dataset: str) -> list[Path]:
    """The source files a run of ``dataset`` depends on: the layers that train, with only that
    dataset's own reader module among the readers (a fix to the Criteo reader does not retrain
    the synthetic log's runs). An unknown dataset depends on every reader."""
    from widedeep.data.readers import MODULES

    readers = PACKAGE / "data" / "readers"
    others = {readers / f"{m}.py" for name, m in MODULES.items() if name != dataset}
    if dataset not in MODULES:
        others = set()
    files = [p for layer in TRAINING_LAYERS for p in (PACKAGE / layer).rglob("*.py")]
    return sorted(p for p in files if p not in others)


@cache
def code_digest(dataset: str) -> str:
    """sha256 over `digest_files`, in a stable order."""
    digest = hashlib.sha256()
    for path in digest_files(dataset):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def versions() -> dict[str, str]:
    from importlib.metadata import version

    import numpy
    import polars
    import torch

    return {
        "widedeep": version("widedeep"),
        "torch": torch.__version__,
        # From its metadata: importing Lightning only to read this took ~6 s on first use.
        "pytorch_lightning": version("pytorch_lightning"),
        "polars": polars.__version__,
        "numpy": numpy.__version__,
    }


@cache
def git_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), or ``package <version>``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=PACKAGE, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"package {versions()['widedeep']}"
    return head + ("+dirty" if dirty else "")


def _source_run(init_from: str) -> str:
    """``model.init_from`` as keyed: the key of the stored or sealed run whose checkpoint it
    is (where that run lives is no part of what trains), else the path as given."""
    path = Path(init_from)
    run = path / RUN_FILE if path.is_dir() else path.parent.parent / RUN_FILE
    if run.is_file():
        return "run:" + json.loads(run.read_text())["key"]
    return init_from


def key_document(cfg: DictConfig) -> dict[str, Any]:
    """What a run's key digests: its training config, the training code and the versions."""
    missing = [k for k in KEYED if k not in cfg]
    if missing:
        raise ValueError(f"run config lacks {missing}: not a widedeep-train config")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    config = {k: resolved[k] for k in KEYED}
    for group, keys in UNKEYED.items():
        config[group] = {k: v for k, v in config[group].items() if k not in keys}
    model = config["model"]
    for key, off in NEW_MODEL_KEYS.items():
        if key in model and model[key] == off and type(model[key]) is type(off):
            del model[key]
    init_from = model.get("init_from")
    if isinstance(init_from, dict):  # a warm start: {wide: run, deep: run}
        model["init_from"] = {t: _source_run(str(p)) for t, p in sorted(init_from.items())}
    elif init_from:
        model["init_from"] = _source_run(str(init_from))
    return {"config": config, "code": code_digest(str(cfg.data.name)), "versions": versions()}


def run_key(cfg: DictConfig) -> str:
    text = json.dumps(key_document(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _cap(cfg: DictConfig) -> int:
    return int(cfg.trainer.max_epochs)


@dataclass(frozen=True)
class RunRecord:
    """A finished run: where it is and what it measured."""

    key: str
    path: Path
    metrics: dict[str, Any]
    reused: bool
    commit: str
    max_epochs: int  # the epoch cap: a run that reached it was not ended by early stopping
    sealed: bool = False  # read from the archive: no checkpoints, sizes in sizes.json

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.parquet"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.ckpt"


def seal(run: Path, archive: Path) -> Path:
    """Copy a finished run into ``archive`` without its checkpoints (see the module's doc);
    atomic: a sealed run is complete or absent. Returns the sealed run's folder."""
    from widedeep.experiment.size import wide_nonzero_groups

    target = archive / run.name
    if (target / RUN_FILE).is_file():
        return target
    archive.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{run.name}.", dir=archive))
    try:
        for name in ("metrics.json", "config.yaml"):
            shutil.copy2(run / name, part / name)
        if (run / "logs" / "metrics.csv").is_file():
            (part / "logs").mkdir()
            shutil.copy2(run / "logs" / "metrics.csv", part / "logs" / "metrics.csv")
        frame = pl.read_parquet(run / "predictions.parquet")
        frame.filter(pl.col("split").is_in(SEALED_SPLITS)).write_parquet(
            part / "predictions.parquet", compression="zstd", compression_level=19
        )
        write_json(part / SIZES_FILE, wide_nonzero_groups(run / "checkpoints" / "best.ckpt"))
        shutil.copy2(run / RUN_FILE, part / RUN_FILE)  # last: its presence marks a whole run
        part.rename(target)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    return target


class RunStore:
    """Runs under ``root/<kind>-<key[:16]>/``; ``get(cfg)`` trains a config or reuses its run,
    from the store or, sealed, from ``archive``; every run it returns is sealed there too."""

    def __init__(self, root: Path, reuse: bool = True, archive: Path | None = None) -> None:
        self.root = Path(root)
        self.reuse = reuse
        self.archive = None if archive is None else Path(archive)
        self.reused = 0
        self.trained = 0

    def path(self, cfg: DictConfig) -> Path:
        return self.root / f"{cfg.model.kind}-{run_key(cfg)[:16]}"

    def _read(self, cfg: DictConfig, key: str, path: Path, sealed: bool) -> RunRecord | None:
        run, metrics = path / RUN_FILE, path / "metrics.json"
        if not (run.is_file() and metrics.is_file()):
            return None
        stored = json.loads(run.read_text())
        if stored.get("key") != key:  # a 16-digit prefix collision
            raise ValueError(f"{path}: holds another run (key mismatch); remove it")
        return RunRecord(
            stored["key"], path, json.loads(metrics.read_text()), True, stored["commit"],
            _cap(cfg), sealed,
        )

    def finished(self, cfg: DictConfig, need_checkpoint: bool = False) -> RunRecord | None:
        """The finished run of ``cfg`` with the same full key: in the store, else (unless
        ``need_checkpoint``) sealed in the archive."""
        if not self.reuse:
            return None
        key = run_key(cfg)  # the key is computed once: it resolves and hashes the whole config
        name = f"{cfg.model.kind}-{key[:16]}"
        done = self._read(cfg, key, self.root / name, sealed=False)
        if done is None and self.archive is not None and not need_checkpoint:
            done = self._read(cfg, key, self.archive / name, sealed=True)
        return done

    def get(
        self,
        cfg: DictConfig,
        extra_callbacks: Sequence[Any] = (),
        label: str | None = None,
        need_checkpoint: bool = False,
        seal: bool = True,
    ) -> RunRecord:
        """Reuse the finished run of ``cfg``, or train it (resuming a killed attempt);
        ``label`` names the run in the log; ``need_checkpoint``: a sealed copy will not do;
        ``seal``: copy the run into the archive (tuning trials are not sealed)."""
        done = self.finished(cfg, need_checkpoint)
        if label is not None:
            log.info("%s (%s)", label, "reused" if done else "training")
        if done is not None:
            self.reused += 1
            if seal and not done.sealed:
                self._seal(done.path)
            return done
        from widedeep.training.run import train

        key, path = run_key(cfg), self.path(cfg)
        last = path / "checkpoints" / "last.ckpt"
        run_cfg = cfg.copy()
        OmegaConf.set_struct(run_cfg, False)
        run_cfg.output_dir = str(path)
        run_cfg.resume_from = str(last) if self.reuse and last.is_file() else None
        OmegaConf.set_struct(run_cfg, True)
        write_json(
            path / RUN_FILE,
            {
                "key": key,
                "document": key_document(cfg),
                "commit": git_commit(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        metrics = train(run_cfg, extra_callbacks)
        self.trained += 1
        if seal:
            self._seal(path)
        return RunRecord(key, path, metrics, False, git_commit(), _cap(cfg))

    def _seal(self, path: Path) -> None:
        if self.archive is not None:
            seal(path, self.archive)

    def summary(self) -> str:
        total = self.reused + self.trained
        return f"reused {self.reused} of {total} runs, trained {self.trained}"
