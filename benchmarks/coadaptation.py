"""Co-adaptation made visible (issue 20): validation AUC per epoch of the wide tower alone, the
deep tower alone, the joint model, and the joint model under each objective against
co-adaptation, on the synthetic log.

The runs (checkpoints and all) go to --work (default <out>/runs); --out gets the small files.

    python benchmarks/coadaptation.py --out benchmarks/results/coadaptation \\
        --work benchmarks/.work/coadaptation --rows 200000 --epochs 15 --patience 3 --seed 0

Trains (or, with the same --out, reuses) one run per curve with widedeep-train's `train`:
wide, deep, joint, joint + tower dropout, joint + auxiliary losses, joint warm-started from the
wide and deep runs (combination weights, towers held for --hold epochs, learning rates x
--lr-scale), joint + per-tower stopping. Writes curves.csv (run, epoch, val_auc), runs.csv
(best validation epoch and AUC, test AUC at the best epoch) and coadaptation.png, with the
members' probability mean (best epochs, split A) as a dashed line. The warm start's epochs
count from the end of its members' training. Extra ``key=value`` arguments are training
overrides for every run (e.g. ``optim=paper model.deep.dropout=0.3``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from widedeep.core.io import atomic_write  # noqa: E402


def runs(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each curve's overrides, in training order (the warm start after its members)."""
    work = Path(args.work)
    warm = f"{{wide: {work / 'wide'}, deep: {work / 'deep'}}}"
    hold = f"{{wide: {args.hold}, deep: {args.hold}}}"
    return {
        "wide": ["model=wide"],
        "deep": ["model=deep"],
        "joint": [],
        "tower_dropout": [f"model.tower_dropout={args.tower_dropout}"],
        "aux_loss": [f"model.aux_loss={args.aux_loss}"],
        "warm": [
            f"model.init_from={warm}",
            "model.combine=true",
            f"model.finetune={{lr_scale: {args.lr_scale}, hold: {hold}}}",
        ],
        "per_tower_stop": [f"model.tower_stop={{patience: {args.tower_patience}}}"],
    }


def train_one(name: str, overrides: list[str], args: argparse.Namespace) -> Path:
    from widedeep.cli.config import compose_config
    from widedeep.training.run import train

    run = Path(args.work) / name
    if (run / "metrics.json").is_file():  # finished before: reused
        return run
    common = [
        f"data.generator.n_rows={args.rows}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.patience={args.patience}",
        f"seed={args.seed}",
        "trainer.logger=csv",
        "trainer.progress_bar=false",
        *args.overrides,
    ]
    train(compose_config([*common, *overrides], str(run)))
    return run


def curve(run: Path) -> pl.DataFrame:
    """Validation AUC per training epoch (the final evaluation's row has no train step)."""
    log = pl.read_csv(run / "logs" / "metrics.csv", infer_schema_length=None)
    val = log.filter(pl.col("val/auc").is_not_null()).select("epoch", "val/auc")
    # The last row with val/auc is the final evaluation of the best weights: not an epoch.
    return val.head(val.height - 1).rename({"val/auc": "val_auc"})


def ensemble_auc(wide: Path, deep: Path) -> float:
    """The members' probability mean on validation split A, at their best epochs."""
    from widedeep.experiment.stats import auc

    frames = [
        pl.read_parquet(r / "predictions.parquet").filter(split="valid") for r in (wide, deep)
    ]
    prob = np.mean([1 / (1 + np.exp(-f["logit"].to_numpy())) for f in frames], axis=0)
    return float(auc(frames[0]["label"].to_numpy(), prob))


def plot(curves: pl.DataFrame, ensemble: float, offset: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in curves["run"].unique(maintain_order=True):
        c = curves.filter(run=name)
        shift = offset if name == "warm" else 0
        style = "--" if name in ("wide", "deep") else "-"
        ax.plot(
            c["epoch"].to_numpy() + 1 + shift,
            c["val_auc"].to_numpy(),
            style,
            marker="o",
            markersize=3,
            label=name,
        )
    ax.axhline(ensemble, color="grey", linestyle=":", label="wide + deep, probability mean")
    ax.set_xlabel("epoch (warm: after its members' epochs)")
    ax.set_ylabel("validation AUC (split A)")
    ax.set_title("Co-adaptation: validation AUC per epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the curves and the plot")
    parser.add_argument("--work", help="folder for the runs (default: <out>/runs)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tower-dropout", type=float, default=0.2)
    parser.add_argument("--aux-loss", type=float, default=0.5)
    parser.add_argument("--lr-scale", type=float, default=0.1)
    parser.add_argument("--hold", type=int, default=1, help="warm: epochs of combination only")
    parser.add_argument("--tower-patience", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="training overrides for every run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    args.work = args.work or str(out / "runs")
    out.mkdir(parents=True, exist_ok=True)
    rows, frames = [], []
    for name, overrides in runs(args).items():
        run = train_one(name, overrides, args)
        frames.append(curve(run).with_columns(pl.lit(name).alias("run")))
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append(
            {
                "run": name,
                "best_epoch": metrics["best_epoch"],
                "epochs": metrics["epochs"],
                "val_auc": metrics["val"]["auc"],
                "test_auc": metrics["test"]["auc"],
            }
        )
    curves = pl.concat(frames).select("run", "epoch", "val_auc")
    atomic_write(out / "curves.csv", curves.write_csv)
    atomic_write(out / "runs.csv", pl.DataFrame(rows).write_csv)
    offset = max(r["epochs"] for r in rows if r["run"] in ("wide", "deep"))
    work = Path(args.work)
    plot(curves, ensemble_auc(work / "wide", work / "deep"), offset, out / "coadaptation.png")
    print(pl.DataFrame(rows))
    return out


if __name__ == "__main__":
    main()
