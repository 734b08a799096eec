"""The tidy results table of a benchmark: one row per cell (arm, data split, seed, levels),
each carrying where it came from: its members' run keys, the commit and library versions, how
long it trained and whether early stopping (not the epoch cap) ended every member.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from widedeep.experiment.arms import ArmOutput, arm_output
from widedeep.experiment.attribution import auc_drop, variance_shares
from widedeep.experiment.plan import Cell, Model
from widedeep.experiment.runs import SEALED_SPLITS, SIZES_FILE, RunRecord, versions
from widedeep.experiment.size import wide_nonzero_groups


@dataclass
class Measured:
    """What the harness measured: the table, each cell's logits (for intervals and slices),
    the runs behind them and the tuned settings they used."""

    table: pl.DataFrame
    outputs: dict[Cell, ArmOutput]
    records: dict[Model, RunRecord]
    frames: dict[Model, pl.DataFrame] = field(default_factory=dict)
    tuned: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    sizes: dict[Model, dict[str, int]] = field(default_factory=dict)
    datasets: dict[int | None, Any] = field(default_factory=dict)  # data split -> its data

    def cross_nonzero(self, model: Model) -> int:
        """Non-zero weights of the model's cross features (read once from its checkpoint)."""
        if model.kind == "deep":
            return 0
        if model not in self.sizes:
            self.sizes[model] = run_sizes(self.records[model])
        return self.sizes[model]["crosses"]

    def frame(self, model: Model) -> pl.DataFrame:
        """A model's saved predictions of split B and test (read once): the rows a sealed run
        keeps, so that stored and sealed members align."""
        if model not in self.frames:
            frame = pl.read_parquet(self.records[model].predictions)
            self.frames[model] = frame.filter(pl.col("split").is_in(SEALED_SPLITS))
        return self.frames[model]


def run_sizes(record: RunRecord) -> dict[str, int]:
    """Non-zero wide weights per group: counted when the run was sealed, else from its best
    checkpoint."""
    if record.sealed:
        return json.loads((record.path / SIZES_FILE).read_text())
    return wide_nonzero_groups(record.best_checkpoint)


def _member_facts(members: Sequence[Model], records: Mapping[Model, RunRecord]) -> dict:
    metrics = [records[m].metrics for m in members]
    max_epochs = [records[m].max_epochs for m in members]
    return {
        "members": len(members),
        "val_auc": sum(m["val"]["auc"] for m in metrics) / len(metrics),
        "params": sum(m["params"]["total"] for m in metrics),
        # what a deployed model stores: the wide tower's non-zero weights, every deep
        # parameter, one bias per member
        "nonzero_params": sum(
            m["params"]["wide_nonzero"] + m["params"]["deep"] + 1 for m in metrics
        ),
        "wide_nonzero": metrics[0]["params"]["wide_nonzero"],
        "train_time_s": sum(m["fit_time_s"] for m in metrics),
        "epochs": "/".join(str(m["epochs"]) for m in metrics),
        "best_epoch": "/".join(str(m["best_epoch"]) for m in metrics),
        "max_epochs": max(max_epochs),
        "stopped_early": all(m["epochs"] < cap for m, cap in zip(metrics, max_epochs, strict=True)),
        "run_keys": ",".join(records[m].key[:16] for m in members),
        "logs": ",".join(str(records[m].path / "logs" / "metrics.csv") for m in members),
        "commit": ",".join(sorted({records[m].commit for m in members})),
    }


def _attribution(measured: Measured, members: Sequence[Model]) -> dict[str, float]:
    """For a single model with both towers: each tower's centred variance share of the test
    logit and the test AUC lost when the tower's logit is replaced by its mean."""
    nan = {"share_wide": None, "share_deep": None, "auc_drop_wide": None, "auc_drop_deep": None}
    if len(members) != 1 or members[0].kind != "wide_deep":
        return nan
    test = measured.frame(members[0]).filter(pl.col("split") == "test")
    zw, zd = test["wide_logit"].to_numpy(), test["deep_logit"].to_numpy()
    shares, drops = variance_shares(zw, zd), auc_drop(test["label"].to_numpy(), zw, zd)
    return {
        "share_wide": shares["wide"],
        "share_deep": shares["deep"],
        "auc_drop_wide": drops["wide"],
        "auc_drop_deep": drops["deep"],
    }


def collect(
    dataset: str,
    cells: Sequence[Cell],
    records: Mapping[Model, RunRecord],
    k_members: int = 0,
) -> Measured:
    """Build every cell's arm from its members' predictions; one table row per cell."""
    measured = Measured(pl.DataFrame(), {}, dict(records))
    rows = []
    stamp = json.dumps(versions(), sort_keys=True)
    for cell in cells:
        members = cell.members(k_members)
        out = arm_output(cell.arm, [measured.frame(m) for m in members])
        measured.outputs[cell] = out
        test, fit = out.scores("test"), out.scores("valid_b")
        rows.append(
            {
                "dataset": dataset,
                "arm": cell.arm,
                "data_seed": cell.data_seed,
                "seed": cell.seed,
                "wide_level": cell.wide_level,
                "deep_level": cell.deep_level,
                "test_auc": test["auc"],
                "test_logloss": test["logloss"],
                "valid_b_auc": fit["auc"],
                **_member_facts(members, records),
                "wide_cross_nonzero": sum(measured.cross_nonzero(m) for m in members),
                **_attribution(measured, members),
                "combiner": out.combiner,
                "weights": None if out.weights is None else json.dumps(out.weights),
                "versions": stamp,
            }
        )
    measured.table = pl.DataFrame(rows, infer_schema_length=None)
    return measured
