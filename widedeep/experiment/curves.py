"""Per-epoch validation curves of runs, from their Lightning CSV logs, and a plot of them.

A run trained with ``trainer.logger=csv`` has ``<run>/logs/metrics.csv`` (CSVLogger, see
``widedeep.training.run``): columns ``epoch, step`` and one per logged metric, sorted by name
(``test/auc, test/logloss, train/loss, val/auc, val/auc_minus_logloss, val/logloss,
wide/nonzero, wide/nonzero_share``; a metric appears once it was logged). Each log call is
its own row, blank elsewhere: per epoch a ``val/*`` row, a ``wide/*`` row (models with a
wide tower) and, every ``trainer.log_every_n_steps`` steps, a ``train/loss`` row. After
fitting, ``train`` re-validates and tests the best checkpoint: a ``val/*`` row and a
``test/*`` row at epoch = the number of epochs trained, which are not part of the curve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from widedeep.core.io import atomic_write

LOG = Path("logs") / "metrics.csv"


def read_curve(run_dir: str | Path) -> pl.DataFrame:
    """One row per trained epoch: ``epoch``, ``step`` (the last logged), ``val_auc``,
    ``val_logloss``, ... (each ``a/b`` column as ``a_b``; ``train_*`` is the mean over the
    epoch's logged steps, the others the epoch's last value). Test metrics and the post-fit
    re-validation are left out. FileNotFoundError naming the file when the log is missing."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no training log (train the run with trainer.logger=csv to write it)"
        )
    raw = pl.read_csv(path, infer_schema=False)  # all text; blank fields are null
    if "epoch" not in raw.columns or raw.is_empty():
        raise ValueError(f"{path}: not a Lightning metrics log (no epoch column or no rows)")
    frame = raw.select(
        pl.col("epoch", "step").cast(pl.Int64),
        *(pl.col(c).cast(pl.Float64) for c in raw.columns if c not in ("epoch", "step")),
    )
    # The post-fit evaluation is logged at epoch = epochs trained: cut there, known from the
    # test row or else metrics.json (a run still training has neither and keeps every row).
    tests = [c for c in frame.columns if c.startswith("test/")]
    tested = frame.filter(pl.any_horizontal(pl.col(tests).is_not_null())) if tests else None
    if tested is not None and not tested.is_empty():
        frame = frame.filter(pl.col("epoch") < tested["epoch"].min())
    elif (path.parent.parent / "metrics.json").is_file():
        epochs = json.loads((path.parent.parent / "metrics.json").read_text()).get("epochs")
        if isinstance(epochs, int):
            frame = frame.filter(pl.col("epoch") < epochs)
    metrics = [c for c in frame.columns if c not in ("epoch", "step") and c not in tests]
    curve = (
        frame.group_by("epoch")
        .agg(
            pl.col("step").max(),
            *(
                pl.col(c).mean() if c.startswith("train/") else pl.col(c).drop_nulls().last()
                for c in metrics
            ),
        )
        .rename({c: c.replace("/", "_") for c in metrics})
        .sort("epoch")
    )
    val = [c for c in curve.columns if c.startswith("val_")]
    if not val:
        raise ValueError(f"{path}: no validation metrics (val/*) logged")
    return curve.filter(pl.any_horizontal(pl.col(val).is_not_null()))


def read_curves(runs: Mapping[str | Path, str]) -> pl.DataFrame:
    """Curves of several runs, ``{run_dir: arm}``, stacked with ``run`` and ``arm`` columns
    (a metric one run did not log, e.g. wide_nonzero of a deep-only model, is null there)."""
    frames = [
        read_curve(run).with_columns(pl.lit(str(run)).alias("run"), pl.lit(arm).alias("arm"))
        for run, arm in runs.items()
    ]
    return pl.concat(frames, how="diagonal_relaxed").select("run", "arm", pl.exclude("run", "arm"))


def plot_curves(
    curves: pl.DataFrame, path: str | Path, metric: str = "val_auc", title: str | None = None
) -> None:
    """One line per run (``metric`` by epoch), coloured by arm, written atomically as a PNG.

    ``curves``: as from ``read_curves`` (columns run, arm, epoch and ``metric``)."""
    # The object API with the Agg canvas: no pyplot, so no global backend switch or figure
    # left open in a long-running process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    missing = {"run", "arm", "epoch", metric} - set(curves.columns)
    if missing:
        raise ValueError(f"plot_curves: columns {sorted(missing)} missing from the curves")
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    arms = curves["arm"].unique(maintain_order=True).to_list()
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    seen: set[str] = set()
    for (_, arm), part in curves.sort("epoch").group_by("run", "arm", maintain_order=True):
        part = part.filter(pl.col(metric).is_not_null())
        ax.plot(
            part["epoch"].to_numpy(),
            part[metric].to_numpy(),
            color=colours[arm],
            alpha=0.8,
            marker=".",
            label=None if arm in seen else arm,  # one legend entry per arm
        )
        seen.add(arm)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} by epoch, one line per run")
    ax.grid(alpha=0.3)
    ax.legend(title="arm")
    fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, dpi=110, format="png"))
