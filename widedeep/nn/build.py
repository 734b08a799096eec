"""The wide arm, the deep arm or the joint model, built from primitive settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from widedeep.core.schema import Schema
from widedeep.nn.deep import DeepTower
from widedeep.nn.model import WideDeep
from widedeep.nn.wide import WideTower

KINDS = ("wide", "deep", "wide_deep")


def build_model(
    schema: Schema,
    kind: str,
    wide: Mapping[str, Any],
    deep: Mapping[str, Any],
    combine: bool = False,
) -> WideDeep:
    """The wide arm, the deep arm or the joint model, from primitive settings; ``combine``:
    per-tower weights on the logits (`WideDeep`, joint model only)."""
    if kind not in KINDS:
        raise ValueError(f"model.kind must be one of {KINDS}, got {kind!r}")
    wide_tower = deep_tower = None
    if kind in ("wide", "wide_deep"):
        wide_tower = WideTower(schema, bias=False, **dict(wide))
    if kind in ("deep", "wide_deep"):
        settings = dict(deep)
        settings["hidden"] = tuple(settings.get("hidden", ()))
        deep_tower = DeepTower(schema, bias=False, **settings)
    if combine and kind != "wide_deep":
        raise ValueError(f"model.combine=true needs model.kind=wide_deep, got {kind!r}")
    return WideDeep(wide_tower, deep_tower, combine=combine)
