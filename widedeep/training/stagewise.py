"""Stagewise training: one tower of a wide_deep model taken from an earlier run and frozen.

``model.frozen=deep model.init_from=<deep run>/checkpoints/best.ckpt`` trains the wide tower (and
the shared bias) on the fixed logit of an already trained deep tower, and ``frozen=wide`` the
reverse: the halfway point between joint training (both towers move together) and an ensemble
(neither sees the other). The source may be a run of the arm alone or a joint model; only the
tower itself is taken, never the source's bias or optimizer state.

The source must fit the new run exactly: the same schema (the same data and features) and the
same tower settings, else its weights would not mean the same thing; each mismatch is one line
naming ``model.init_from``. The freezing itself is `WideDeep.freeze` (plain torch).

``model.init_from={wide: <run>, deep: <run>}`` (no ``model.frozen``) is the warm start of joint
fine-tuning: both towers from two separately trained runs (the ensemble's members), both
trainable (`warm_start`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from widedeep.core.schema import Schema
from widedeep.nn.model import WideDeep
from widedeep.training.checkpoint import load_checkpoint

TOWERS = ("wide", "deep")
# Tower settings that change neither the weights' shapes nor the eval-mode logit.
IGNORED = frozenset({"dropout", "sparse_min_rows"})


def read_source(path: str | Path, tower: str) -> dict[str, Any]:
    """The checkpoint to take ``tower`` from, checked to hold that tower: fails before any
    data is loaded. Raises `ValueError` naming ``model.init_from``."""
    if tower not in TOWERS:
        raise ValueError(f"model.frozen={tower!r}: must be null, wide or deep")
    try:
        state = load_checkpoint(path, "inference")
    except ValueError as err:
        raise ValueError(f"model.init_from={str(path)!r}: {err}") from None
    kind = state["hyper_parameters"].get("kind")
    if kind not in (tower, "wide_deep"):
        raise ValueError(
            f"model.init_from={str(path)!r}: a {kind!r} checkpoint has no {tower} tower "
            f"(model.frozen={tower} needs a {tower} or wide_deep run)"
        )
    return state


def _differences(source: Mapping[str, Any], here: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(source) | set(here)) - IGNORED)
    return [k for k in keys if source.get(k) != here.get(k)]


def load_frozen_tower(
    model: WideDeep,
    tower: str,
    source: Mapping[str, Any],
    schema: Schema,
    settings: Mapping[str, Any],
    path: str | Path = "",
) -> dict[str, Any]:
    """Copy ``tower``'s weights from ``source`` (`read_source`) into ``model`` and freeze it.

    ``schema`` and ``settings`` (``model.<tower>``) are this run's; both must equal the source's.
    Returns what metrics.json records: ``{frozen, init_from, source_kind}``.
    """
    where = f"model.init_from={str(path)!r}"
    hp = source["hyper_parameters"]
    _check_fit(tower, source, schema, settings, where)
    _copy_tower(model, tower, source, where)
    model.freeze(tower)
    return {"frozen": tower, "init_from": str(path), "source_kind": hp.get("kind")}


def _check_fit(
    tower: str,
    source: Mapping[str, Any],
    schema: Schema,
    settings: Mapping[str, Any],
    where: str,
    ignore: tuple[str, ...] = (),
) -> None:
    hp = source["hyper_parameters"]
    theirs = Schema.from_dict(hp["schema"]).to_dict()
    ours = schema.to_dict()
    for key in ignore:
        theirs.pop(key, None), ours.pop(key, None)
    if theirs != ours:
        fields = ", ".join(_differences(theirs, ours))
        raise ValueError(
            f"{where}: its schema differs from this run's data in {fields} (same data and "
            f"features needed to reuse its {tower} tower)"
        )
    differ = _differences(hp.get(tower) or {}, settings)
    if differ:
        k = differ[0]
        raise ValueError(
            f"{where}: its {tower} tower has model.{tower}.{k}={(hp.get(tower) or {}).get(k)!r}, "
            f"this run {settings.get(k)!r}"
        )


def _copy_tower(model: WideDeep, tower: str, source: Mapping[str, Any], where: str) -> None:
    prefix = f"model.{tower}."
    weights = {k[len(prefix) :]: v for k, v in source["state_dict"].items() if k.startswith(prefix)}
    try:
        getattr(model, tower).load_state_dict(weights)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:])[:300]
        raise ValueError(f"{where}: its {tower} weights do not fit this model: {detail}") from None


# -- warm start: model.init_from={wide: <run>, deep: <run>} ---------------------------------------


def checkpoint_of(path: str | Path) -> Path:
    """A run folder's ``checkpoints/best.ckpt``, or the checkpoint path as given."""
    path = Path(path)
    return path / "checkpoints" / "best.ckpt" if path.is_dir() else path


def read_members(init_from: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The two separately trained runs a warm start takes its towers from, each checked to be a
    run of that tower alone (the ensemble's member): fails before any data is loaded."""
    sources = {}
    for tower in TOWERS:
        where = f"model.init_from.{tower}={str(init_from[tower])!r}"
        try:
            state = load_checkpoint(checkpoint_of(init_from[tower]), "inference")
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        kind = state["hyper_parameters"].get("kind")
        if kind != tower:
            raise ValueError(
                f"{where}: a {kind!r} run; a warm start takes each tower from a run of that "
                f"tower alone (model={tower}), whose bias makes it a whole model"
            )
        sources[tower] = state
    return sources


def warm_start(
    model: WideDeep,
    sources: Mapping[str, Mapping[str, Any]],
    schema: Schema,
    settings: Mapping[str, Mapping[str, Any]],
    init_from: Mapping[str, str],
) -> dict[str, Any]:
    """Both towers' weights from the members ``sources`` (`read_members`), trainable, and the
    combination set so that the joint logit before the first step is the members' mean logit
    (with ``model.combine``: ``scale = 1/2``, bias the mean of their biases; the ``ens_mean_logit``
    ensemble) or, without it, their sum (both biases added: the stacker with a = b = 1).
    Returns what metrics.json records: ``{init_from, biases}``."""
    biases = {}
    for tower in TOWERS:
        where = f"model.init_from.{tower}={str(init_from[tower])!r}"
        # The deep tower reads no crosses (DeepTower): a wide level's crosses are not its schema.
        ignore = ("crosses",) if tower == "deep" else ()
        _check_fit(tower, sources[tower], schema, settings[tower], where, ignore)
        _copy_tower(model, tower, sources[tower], where)
        biases[tower] = sources[tower]["state_dict"]["model.bias"].reshape(1)
    with torch.no_grad():
        if model.scale is not None:
            model.scale.fill_(0.5)
            model.bias.copy_((biases["wide"] + biases["deep"]) / 2)
        else:
            model.bias.copy_(biases["wide"] + biases["deep"])
    return {
        "init_from": {t: str(checkpoint_of(init_from[t])) for t in TOWERS},
        "biases": {t: float(b) for t, b in biases.items()},
    }
