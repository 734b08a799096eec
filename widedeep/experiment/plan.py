"""The plan of the joint-vs-ensemble benchmark: which arms to measure, which models they need,
and each model's training config.

An *arm* is what the report compares (the joint model, an ensemble of separately trained
halves, a control); a *model* is one training run. Arms are built afterwards from their
members' saved predictions (`widedeep.experiment.arms`), never by retraining, so arms share
models: the wide + deep ensembles reuse the wide and deep arms' runs. Every model trains with
the same data, split, features, early stopping (on validation split A) and, per kind, the
same tuned setting; only the arm's defining difference varies.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from widedeep.nn.build import KINDS

# A further member of an ensemble of one kind trains with seed + MEMBER_SEED_STEP * member.
MEMBER_SEED_STEP = 1000
CORE_ARMS = (
    "wide", "deep", "joint", "joint_refit",
    "ens_mean_prob", "ens_mean_logit", "ens_stack", "ens_best",
)
CONTROLS = (
    "ens_deep_deep", "ens_joint_joint", "joint_2x", "stagewise_deep_first", "stagewise_wide_first",
)
# The joint model trained with an objective against co-adaptation (issue 20; opt-in through
# bench.objectives): arm -> the variant of its one model. Each variant is tuned as a kind of its
# own: the joint model's space plus the objective's (tune.space.<arm>), the same trial budget.
OBJECTIVES = {
    "joint_tower_dropout": "tower_dropout",
    "joint_aux": "aux",
    "joint_warm": "warm",
    "joint_per_tower_stop": "per_tower_stop",
}
# Each objective's setting without tuning (bench.tune.trials=0), under the tuned values.
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tower_dropout": {"model.tower_dropout": 0.2},
    "aux": {"model.aux_loss": 0.5},
    "warm": {
        "model.combine": True,
        "model.finetune": {"lr_scale": 0.1, "hold": {"wide": 1, "deep": 1}},
    },
    "per_tower_stop": {"model.tower_stop": {"patience": 1, "min_delta": 0.0}},
}
VARIANTS = ("", "2x", "frozen_deep", "frozen_wide", *OBJECTIVES.values())
BUDGETS = ("per_model", "equal_total")
NONE = "-"  # the level of a tower an arm does not have


@dataclass(frozen=True)
class Model:
    """One training run: a kind at a seed, a data split and capacity levels."""

    kind: str  # wide | deep | wide_deep
    seed: int
    data_seed: int | None
    wide_level: str
    deep_level: str
    member: int = 0
    variant: str = ""  # "2x": twice the epoch budget; "frozen_<tower>": stagewise; OBJECTIVES
    budget: str = "per_model"  # the tuned setting it uses

    @property
    def train_seed(self) -> int:
        return self.seed + MEMBER_SEED_STEP * self.member

    @property
    def name(self) -> str:
        parts = [self.kind, f"seed{self.seed}", f"w={self.wide_level}", f"d={self.deep_level}"]
        parts += [f"data{self.data_seed}"] if self.data_seed is not None else []
        parts += [f"member{self.member}"] if self.member else []
        parts += [self.variant] if self.variant else []
        parts += [self.budget] if self.budget != "per_model" else []
        return "/".join(parts)

    @property
    def tuned_as(self) -> tuple[str, str]:
        """The key of its tuned setting: (kind, budget), an objective's (kind, variant)."""
        return (self.kind, self.variant if self.variant in OBJECTIVE_DEFAULTS else self.budget)

    def dependencies(self) -> list[Model]:
        """The runs it starts from: a stagewise model's frozen tower, a warm start's members."""
        if self.variant == "warm":
            base = {"seed": self.seed, "data_seed": self.data_seed, "budget": self.budget}
            return [
                Model("wide", wide_level=self.wide_level, deep_level=NONE, **base),
                Model("deep", wide_level=NONE, deep_level=self.deep_level, **base),
            ]
        dep = self.dependency()
        return [] if dep is None else [dep]

    def dependency(self) -> Model | None:
        """The run a stagewise model's frozen tower is loaded from."""
        if not self.variant.startswith("frozen_"):
            return None
        tower = self.variant.removeprefix("frozen_")
        levels = (self.wide_level, NONE) if tower == "wide" else (NONE, self.deep_level)
        return Model(tower, self.seed, self.data_seed, *levels, budget=self.budget)


@dataclass(frozen=True)
class Cell:
    """One arm at one seed, data split and pair of capacity levels: a row of the results."""

    arm: str
    seed: int
    data_seed: int | None
    wide_level: str
    deep_level: str

    def members(self, k_members: int = 0) -> list[Model]:
        """The models the arm is built from, in order."""
        w, d = self.wide_level, self.deep_level
        base = {"seed": self.seed, "data_seed": self.data_seed}
        wide = Model("wide", wide_level=w, deep_level=NONE, **base)
        deep = Model("deep", wide_level=NONE, deep_level=d, **base)
        joint = Model("wide_deep", wide_level=w, deep_level=d, **base)
        arm = self.arm
        if arm == "wide":
            return [wide]
        if arm == "deep":
            return [deep]
        if arm in ("joint", "joint_refit"):
            return [joint]
        if arm.startswith("ens_") and arm.endswith("_equal_total"):
            return [replace(wide, budget="equal_total"), replace(deep, budget="equal_total")]
        if arm in ("ens_mean_prob", "ens_mean_logit", "ens_stack", "ens_best"):
            return [wide, deep]
        if arm == "ens_deep_deep":
            return [deep, replace(deep, member=1)]
        if arm == "ens_joint_joint":
            return [joint, replace(joint, member=1)]
        if arm == "joint_2x":
            return [replace(joint, variant="2x")]
        if arm == "stagewise_deep_first":
            return [replace(joint, variant="frozen_deep")]
        if arm == "stagewise_wide_first":
            return [replace(joint, variant="frozen_wide")]
        if arm in OBJECTIVES:
            return [replace(joint, variant=OBJECTIVES[arm])]
        if arm.startswith("deep_k"):
            return [replace(deep, member=m) for m in range(int(arm.removeprefix("deep_k")))]
        raise ValueError(f"unknown arm {arm!r}")


def levels_of(arm: str, wide_level: str, deep_level: str) -> tuple[str, str]:
    """The levels an arm's cell carries at a (wide, deep) point of the sweep."""
    return {"wide": (wide_level, NONE), "deep": (NONE, deep_level)}.get(
        arm, (wide_level, deep_level)
    )


def levels(bench: Mapping[str, Any], tower: str) -> dict[str, dict[str, Any]]:
    found = {lv["name"]: dict(lv.get("overrides") or {}) for lv in bench["sweep"][tower]}
    if not found:
        raise ValueError(f"bench.sweep.{tower} needs at least one level")
    return found


def data_seeds(bench: Mapping[str, Any]) -> list[int | None]:
    seeds = bench.get("data_seeds")
    return [None] if seeds is None else list(seeds)


def main_arms(bench: Mapping[str, Any]) -> list[str]:
    """The arms measured at the main levels: the core ones, the controls asked for, the
    equal-total ensemble when tuning, and the K-member deep ensembles."""
    arms = [*CORE_ARMS, *bench.get("controls", ())]
    tune = bench.get("tune") or {}
    if tune.get("trials", 0) and not tune.get("fixed"):  # its members' studies are tuned here
        arms.append("ens_best_equal_total")
    arms += [f"deep_k{k}" for k in range(1, int(bench.get("k_members", 0)) + 1)]
    return arms


def reported_arms(bench: Mapping[str, Any]) -> list[str]:
    """The arms of a report's tables at the main levels: `main_arms`, then the objectives."""
    return [*main_arms(bench), *(bench.get("objectives") or ())]


def frontier_arms(bench: Mapping[str, Any]) -> list[str]:
    """The arms a size frontier is drawn for: joint, each joint objective, the best ensemble."""
    return ["joint", *(bench.get("objectives") or ()), "ens_best"]


GRIDS = ("main", "axes", "full")


def plan(bench: Mapping[str, Any]) -> list[Cell]:
    """Every cell of the results table. Joint models run at each pair of levels (``grid:
    full``), along both axes through the main levels (``grid: axes``) or at the main levels
    only (``grid: main``, the primary comparison without the size sweep); the controls at the
    main levels only."""
    wide, deep = levels(bench, "wide"), levels(bench, "deep")
    main_w, main_d = bench["main"]["wide"], bench["main"]["deep"]
    if main_w not in wide or main_d not in deep:
        raise ValueError(f"bench.main names levels {main_w!r}/{main_d!r} not in bench.sweep")
    grid = bench.get("grid", "axes")
    if grid not in GRIDS:
        raise ValueError(f"bench.grid={grid!r}: expected one of {GRIDS}")
    if grid == "main":
        wide, deep = {main_w: wide[main_w]}, {main_d: deep[main_d]}
    unknown = [c for c in bench.get("controls", ()) if c not in CONTROLS]
    if unknown:
        raise ValueError(f"bench.controls: unknown {unknown}; known: {list(CONTROLS)}")
    objectives = list(bench.get("objectives") or ())
    unknown = [c for c in objectives if c not in OBJECTIVES]
    if unknown:
        raise ValueError(f"bench.objectives: unknown {unknown}; known: {list(OBJECTIVES)}")
    cells = []
    for data_seed in data_seeds(bench):
        for seed in bench["seeds"]:
            at = {"seed": seed, "data_seed": data_seed}
            cells += [Cell("wide", wide_level=w, deep_level=NONE, **at) for w in wide]
            cells += [Cell("deep", wide_level=NONE, deep_level=d, **at) for d in deep]
            for w in wide:
                for d in deep:
                    main = w == main_w and d == main_d
                    if not (grid == "full" or w == main_w or d == main_d):
                        continue
                    arms = [*(main_arms(bench) if main else CORE_ARMS), *objectives]
                    joint_arms = [a for a in arms if a not in ("wide", "deep")]
                    cells += [Cell(a, wide_level=w, deep_level=d, **at) for a in joint_arms]
    return cells


def models(cells: Iterable[Cell], k_members: int = 0) -> list[Model]:
    """The distinct models the cells need, each after the model it depends on."""
    ordered: dict[Model, None] = {}
    for cell in cells:
        for model in cell.members(k_members):
            for dep in model.dependencies():
                ordered.setdefault(dep)
            ordered.setdefault(model)
    return list(ordered)


def model_config(
    cfg: DictConfig,
    model: Model,
    tuned: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
    init_from: str | Mapping[str, str] | None = None,
) -> DictConfig:
    """The training config of one model: the shared config, the kind's tuned setting (keyed by
    `Model.tuned_as`; an objective's own setting first), the levels' overrides on top, then the
    variant's change. ``init_from``: a stagewise model's frozen tower's checkpoint, a warm
    start's ``{wide: ckpt, deep: ckpt}``."""
    if model.kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {model.kind!r}")
    bench = cfg.bench
    out = copy.deepcopy(cfg)
    OmegaConf.set_struct(out, False)
    out.pop("bench")
    out.pop("hydra", None)
    out.model.kind = model.kind
    out.seed = model.train_seed
    if model.data_seed is not None:
        out.data.split.seed = model.data_seed
    if bench.get("selection") is not None:
        out.data.selection = OmegaConf.to_container(bench.selection, resolve=True)
    settings = dict(OBJECTIVE_DEFAULTS.get(model.variant, {}))
    settings.update((tuned or {}).get(model.tuned_as, {}))
    for tower, level in (("wide", model.wide_level), ("deep", model.deep_level)):
        if level != NONE:
            settings.update(levels(bench, tower)[level])
    for key, value in settings.items():
        OmegaConf.update(out, key, value, merge=False)
    if model.variant == "2x":  # the ensemble's compute: twice the epochs and the patience
        out.trainer.max_epochs = 2 * out.trainer.max_epochs
        out.trainer.patience = 2 * out.trainer.patience
    elif model.variant.startswith("frozen_"):
        if init_from is None:
            raise ValueError(f"{model.name}: a stagewise model needs its frozen tower's run")
        out.model.frozen = model.variant.removeprefix("frozen_")
        out.model.init_from = init_from
    elif model.variant == "warm":
        if not isinstance(init_from, Mapping):
            raise ValueError(f"{model.name}: a warm start needs its members' runs")
        out.model.init_from = {t: str(init_from[t]) for t in ("wide", "deep")}
    out.output_dir = None
    OmegaConf.set_struct(out, True)
    return out


def levels_table(bench_cfg: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(tower, level, overrides) rows, for the report."""
    for tower in ("wide", "deep"):
        for name, overrides in levels(bench_cfg, tower).items():
            text = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(defaults)"
            yield tower, name, text
