"""Resuming: the checkpoint must fit the run that resumes from it, checked before the data loads.

Lightning restores a checkpoint into the module the run builds, so one from another dataset,
model or optimizer fails deep inside it (``size mismatch for model.deep.mlp.0.weight``,
``KeyError: 'beta'``), after the data was loaded. `check_resume` compares the checkpoint's
hyper-parameters with the run's config first and names the first difference, in this order:

1. ``model.kind`` and ``model.frozen`` (and, after the tower settings, the joint objectives);
2. the features, known from the config alone: the categorical (and discretized), dense and bag
   fields, the crosses (and a hashed cross's buckets), the label;
3. the tower settings both define (``model.wide.*``, ``model.deep.*``; a setting the checkpoint
   predates is not compared);
4. each trained tower's optimizer, then the learning-rate scheduler.

The vocabulary sizes are known only once the data is prepared: `Resume.check_schema` compares
them then, before training starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from widedeep.core.schema import NUM_RESERVED_IDS, Schema
from widedeep.data.preprocess import FeatureSpec
from widedeep.training.checkpoint import load_checkpoint, plain

HINT = "resume with the settings it was trained with, or drop resume_from to start anew"


class ResumeMismatchError(ValueError):
    """A checkpoint that cannot resume this run: another dataset, model or optimizer."""


@dataclass(frozen=True)
class Resume:
    """The checkpoint a run resumes from (``path``, for ``trainer.fit``), or none."""

    path: str | None = None
    hyper_parameters: Mapping[str, Any] | None = None

    def check_schema(self, schema: Schema) -> None:
        """Raise `ResumeMismatchError` if the prepared data's tables differ from the
        checkpoint's (e.g. a vocabulary of other rows); nothing without a checkpoint."""
        if self.hyper_parameters is None:
            return
        problem = _table_difference(Schema.from_dict(self.hyper_parameters["schema"]), schema)
        if problem:
            raise _mismatch(self.path, problem)


def check_resume(path: str | Path | None, cfg: Mapping[str, Any]) -> Resume:
    """The checkpoint ``path`` (``resume_from``), checked to be safely loadable, complete and
    to fit the run ``cfg`` (its ``model``, ``optim`` and ``data.features``) before any data is
    loaded. Raises `ValueError` (`ResumeMismatchError` for a misfit) in one line naming it."""
    if path is None or str(path) == "":
        return Resume()
    hp = load_checkpoint(path, "resume")["hyper_parameters"]
    shown = str(Path(path).expanduser())
    model, optim = plain(cfg["model"], "model"), plain(cfg["optim"], "optim")
    features = FeatureSpec.from_config(plain(cfg["data"].get("features") or {}))
    problem = next(_differences(hp, model, optim, features), None)
    if problem:
        raise _mismatch(shown, problem)
    return Resume(shown, hp)


def _mismatch(path: str | None, problem: str) -> ResumeMismatchError:
    return ResumeMismatchError(f"checkpoint {path}: cannot resume this run: {problem}; {HINT}")


def _differences(
    hp: Mapping[str, Any], model: Mapping[str, Any], optim: Mapping[str, Any], spec: FeatureSpec
) -> Iterator[str]:
    yield from _same("model.kind", hp.get("kind"), model.get("kind"))
    yield from _same("model.frozen", hp.get("frozen"), model.get("frozen"))
    yield from _feature_differences(Schema.from_dict(hp["schema"]), spec)
    for tower in ("wide", "deep"):
        theirs, ours = hp.get(tower) or {}, model.get(tower) or {}
        for key in sorted(set(theirs) & set(ours)):
            yield from _same(f"model.{tower}.{key}", theirs[key], ours[key])
    yield from _joint_differences(hp.get("joint"), model)
    yield from _optimizer_differences(hp.get("optim") or {}, optim, model)


# JointSettings fields as config keys (widedeep/training/joint.py).
JOINT_KEYS = {
    "tower_dropout": "model.tower_dropout",
    "aux_loss": "model.aux_loss",
    "combine": "model.combine",
    "lr_scale": "model.finetune.lr_scale",
    "hold": "model.finetune.hold",
    "stop_patience": "model.tower_stop.patience",
    "stop_min_delta": "model.tower_stop.min_delta",
}


def _joint_differences(theirs: Mapping[str, Any] | None, model: Mapping[str, Any]) -> Iterator[str]:
    """The joint objectives (a checkpoint that predates them had none)."""
    from widedeep.training.joint import JointSettings

    old = JointSettings.from_dict(theirs).to_dict()
    new = JointSettings.from_config(model).to_dict()
    for name, key in JOINT_KEYS.items():
        yield from _same(key, old[name], new[name])


def _same(key: str, theirs: Any, ours: Any) -> Iterator[str]:
    if theirs != ours:
        yield f"{key} is {theirs!r} in the checkpoint and {ours!r} in this run"


def _names(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(names[:most]) + (", ..." if len(names) > most else "")
    return f"[{shown}] ({len(names)})"


def _feature_differences(schema: Schema, spec: FeatureSpec) -> Iterator[str]:
    pairs = {
        "categorical fields": ([f.name for f in schema.categorical], list(spec.fields)),
        "dense fields": (list(schema.dense), list(spec.dense)),
        "bag fields": ([f.name for f in schema.bags], list(spec.bags)),
        "crosses": ([c.name for c in schema.crosses], [c.column for c in spec.crosses]),
    }
    for what, (theirs, ours) in pairs.items():
        if theirs != ours:
            yield f"its {what} are {_names(theirs)} and this run's {_names(ours)}"
    for cross, wanted in zip(schema.crosses, spec.crosses, strict=False):
        if cross.hashed != wanted.hashed:
            yield from _same(f"cross {cross.name!r}: hashed", cross.hashed, wanted.hashed)
        elif wanted.hashed and cross.cardinality != wanted.num_buckets + NUM_RESERVED_IDS:
            yield (
                f"cross {cross.name!r} has {cross.cardinality - NUM_RESERVED_IDS} buckets in the "
                f"checkpoint and {wanted.num_buckets} in this run"
            )
    yield from _same("the label", schema.label, spec.label)


def _optimizer_differences(
    theirs: Mapping[str, Any], ours: Mapping[str, Any], model: Mapping[str, Any]
) -> Iterator[str]:
    kind, frozen = model.get("kind"), model.get("frozen")
    for tower in ("wide", "deep"):
        if kind not in (tower, "wide_deep") or tower == frozen:
            continue  # no such tower, or no optimizer for it
        a, b = (theirs.get(tower) or {}).get("name"), (ours.get(tower) or {}).get("name")
        if a != b:
            yield (
                f"the checkpoint's optimizer for the {tower} tower is {a} and the config's is "
                f"{b} (optim.{tower}.name)"
            )
    a, b = ((x.get("scheduler") or {}).get("name") or "none" for x in (theirs, ours))
    if a != b:
        yield (
            f"the checkpoint's learning-rate scheduler is {a} and the config's is {b} "
            "(optim.scheduler.name)"
        )


def _table_difference(theirs: Schema, ours: Schema) -> str | None:
    """The first table whose size differs, or any other difference of the two schemas."""
    groups = {"categorical field": "categorical", "cross": "crosses", "bag field": "bags"}
    for what, group in groups.items():
        for a, b in zip(getattr(theirs, group), getattr(ours, group), strict=False):
            if a.name == b.name and a.cardinality != b.cardinality:
                return (
                    f"{what} {a.name!r} has {a.cardinality} ids in the checkpoint and "
                    f"{b.cardinality} in this run's data (the vocabularies differ: other rows, "
                    "split or min_count)"
                )
    if theirs != ours:
        return "its schema differs from this run's data"
    return None
