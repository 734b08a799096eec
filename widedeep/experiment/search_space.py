"""Search spaces from config: ``{config key: spec}``, each spec ``{type: float|int|categorical,
...}``, nested or with dotted keys; the values a trial draws, as config overrides.

    optim.wide.l1: {type: float, low: 1.0e-4, high: 0.1, log: true}   # also: step
    model.deep.embedding_dim: {type: int, low: 4, high: 32}             # also: log, step
    model.deep.hidden: {type: categorical, choices: [[128], [256, 128]]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
_PRIMITIVE = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One searched config key. Categorical choices that Optuna cannot store (lists, dicts)
    are kept as their JSON text (``encoded``) and decoded back when a value leaves."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    encoded: bool = False

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded else value


def flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{optim: {wide: {l1: spec}}}`` or ``{"optim.wide.l1": spec}`` -> ``{"optim.wide.l1":
    spec}``: a mapping with a ``type`` is a spec, any other mapping a level of the config."""
    flat: dict[str, dict[str, Any]] = {}
    for name, node in space.items():
        key = f"{prefix}{name}"
        if not isinstance(node, Mapping):
            raise ValueError(
                f"search space {key}: expected a spec {{type: float|int|categorical, ...}} "
                f"or a mapping of specs, got {node!r}"
            )
        if "type" in node:
            flat[key] = dict(node)
        else:
            flat.update(flatten_space(node, f"{key}."))
    return flat


def _number(value: Any, integer: bool = False) -> bool:
    kinds = int if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


def parse_space(space: Mapping[str, Any]) -> dict[str, Param]:
    """Check every spec; a malformed one raises a one-line ValueError naming its key."""
    params = {}
    for key, spec in flatten_space(space).items():

        def bad(problem: str, key: str = key, spec: dict = spec) -> ValueError:
            return ValueError(f"search space {key}: {problem} (in {spec})")

        kind = spec.get("type")
        if kind not in _FIELDS:
            raise bad(f"type={kind!r}: expected one of {sorted(_FIELDS)}")
        unknown = set(spec) - _FIELDS[kind]
        if unknown:
            raise bad(f"unknown field(s) {sorted(unknown)} for type {kind}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
                raise bad("choices: expected a non-empty list")
            encoded = not all(isinstance(c, _PRIMITIVE) for c in choices)
            try:  # sort_keys: one dict has one text, whatever order the YAML wrote it in
                stored = tuple(json.dumps(c, sort_keys=True) if encoded else c for c in choices)
            except TypeError as err:
                raise bad(f"choices must be JSON values: {err}") from None
            if len(set(map(repr, stored))) < len(stored):
                raise bad("choices repeat a value")
            params[key] = Param(key, kind, choices=stored, encoded=encoded)
            continue
        integer = kind == "int"
        low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
        if not (_number(low, integer) and _number(high, integer)):
            raise bad(f"low and high must be {'ints' if integer else 'numbers'}")
        if not low < high:
            raise bad(f"low={low} must be < high={high}")
        use_log = spec.get("log", False)
        if not isinstance(use_log, bool):
            raise bad(f"log={use_log!r}: expected true or false")
        if use_log and low <= 0:
            raise bad(f"log=true needs low > 0, got low={low}")
        if step is not None and not (_number(step, integer) and step > 0):
            raise bad(f"step={step!r}: expected a positive {'int' if integer else 'number'}")
        if use_log and step is not None:
            raise bad("log and step cannot be combined")
        params[key] = Param(key, kind, low, high, use_log, step)
    return params


def suggest(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's config overrides ``{key: value}``, one per searched key, in space order."""
    values = {}
    for key, p in parse_space(space).items():
        if p.type == "float":
            values[key] = trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            values[key] = trial.suggest_int(key, p.low, p.high, log=p.log, step=p.step or 1)
        else:
            values[key] = p.decode(trial.suggest_categorical(key, p.choices))
    return values


def decode(space: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored trial parameters (``FrozenTrial.params``) as config overrides."""
    params = parse_space(space)
    order = [*[k for k in params if k in stored], *[k for k in stored if k not in params]]
    return {k: params[k].decode(stored[k]) if k in params else stored[k] for k in order}
