"""Unknown and missing config keys, refused with the closest valid key named.

Hydra type-checks a composed config against the schema (`widedeep.conf.schema`), and refuses
``trainer.max_epoch=1``, but with a hint to add it with ``+``, which it then accepts into any
node. `check_keys` walks the composed config and refuses every key its node's schema lacks
(and the root's, `ROOT_KEYS`); `explain` rewrites Hydra's and OmegaConf's own unknown-key
errors the same way: ``trainer.max_epoch: no such key (did you mean trainer.max_epochs?)``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from widedeep.core.suggest import did_you_mean
from widedeep.training.run import ConfigError

_TRAIN = ("seed", "data", "model", "optim", "trainer", "resume_from", "output_dir")
# The top-level keys of each app's config (no schema: see widedeep/conf/schema.py).
ROOT_KEYS = {
    "train": _TRAIN,
    "bench": (*_TRAIN, "bench"),
    "tune_train": (*_TRAIN, "tune"),
}


def _schema_keys(node: DictConfig) -> list[str] | None:
    schema = node._metadata.object_type
    if not _is_schema(schema):
        return None
    return [f.name for f in dataclasses.fields(schema)]


def _children(node: DictConfig | ListConfig) -> Iterator[tuple[str, object]]:
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
    for key, _ in items:
        yield str(key), node._get_node(key)


def unknown_key_message(path: str, key: str, valid: Iterable[str]) -> str:
    where = f"{path}.{key}" if path else key
    valid = list(valid)
    hint = did_you_mean(key, valid, prefix=f"{path}." if path else "")
    if hint:
        return f"{where}: no such key{hint}"
    return f"{where}: no such key; {path or 'the config'} has {', '.join(valid)}"


def _walk(node: DictConfig | ListConfig, path: str, valid: Iterable[str] | None) -> None:
    if node._is_missing() or node._is_none() or node._is_interpolation():
        return
    if isinstance(node, DictConfig):
        known = list(valid) if valid is not None else _schema_keys(node)
        for key, _ in node.items_ex(resolve=False):
            if known is not None and key not in known:
                raise ConfigError(unknown_key_message(path, str(key), known))
            if OmegaConf.is_missing(node, key):
                where = f"{path}.{key}" if path else key
                raise ConfigError(f"{where} has no value (a config file lacks it)")
    for key, child in _children(node):
        if isinstance(child, DictConfig | ListConfig):
            _walk(child, f"{path}.{key}" if path else key, None)


def check_keys(cfg: DictConfig, app: str = "train") -> None:
    """Raise `ConfigError` on the first key the schema does not know, or without a value."""
    hydra = ("hydra",) if "hydra" in cfg else ()  # compose(return_hydra_config=True)
    _walk(cfg, "", [*ROOT_KEYS[app], *hydra])


def explain(err: BaseException, app: str = "train", overrides: Iterable[str] = ()) -> BaseException:
    """``err``, or a one-line `ConfigError` when ``err`` (or its cause) is a config mistake
    Hydra or OmegaConf found: an unknown key (naming the closest valid one, also at the root of
    ``app``'s config), a value of the wrong type, a group option that does not exist (naming
    the closest one), or an override that does not parse. A mistake of a config file rather
    than of the command line (``overrides``) names the file."""
    from hydra.errors import MissingConfigException, OverrideParseException

    source = re.match(r"In '([^']+)'", str(err))  # where Hydra found it
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OverrideParseException):
            text = " ".join(str(seen.message).split()).replace(" See ", "; see ")
            return ConfigError(f"override {seen.override!r}: {text}")
        if isinstance(seen, MissingConfigException) and seen.options and seen.missing_cfg_file:
            return ConfigError(_missing_option(seen.missing_cfg_file, seen.options, overrides,
                                               source[1] if source else None))
        message = _key_mistake(seen, ROOT_KEYS.get(app, _TRAIN))
        if message:
            return ConfigError(message + (f" (in {source[1]}.yaml)" if source else ""))
        seen = seen.__cause__ or seen.__context__
    return err


def _key_mistake(err: BaseException, root_keys: Iterable[str]) -> str | None:
    """OmegaConf's error on a schema node, or on a key the root of the config lacks, in words."""
    full_key = str(getattr(err, "full_key", None) or "")
    if not isinstance(err, OmegaConfBaseException) or not full_key:
        return None
    schema = getattr(err, "object_type", None)
    if _is_schema(schema):
        path, _, key = full_key.rpartition(".")
        valid = [f.name for f in dataclasses.fields(schema)]
        if key not in valid:
            return unknown_key_message(path, key, valid)
        # the first line: the rest repeats full_key and the schema's name
        return f"{full_key}: {str(err.msg).splitlines()[0]}"
    root = full_key.split(".")[0]
    if root not in (*root_keys, "hydra"):
        return unknown_key_message("", root, root_keys)
    return None


def _missing_option(missing: str, options: Iterable[str], overrides: Iterable[str],
                    source: str | None) -> str:
    """``data=nosuch: no such option (did you mean ...?); choose from ...`` for Hydra's missing
    ``data/nosuch`` config (a group option)."""
    group, _, value = missing.rpartition("/")
    options = sorted(options)
    hint = did_you_mean(value, options, prefix=f"{group}=")
    given = {o.lstrip("+~") for o in overrides}
    where = "" if f"{group}={value}" in given or source is None else f" (in {source}.yaml)"
    return f"{group}={value}: no such option{hint}; choose from {', '.join(options)}{where}"


def _is_schema(schema: object) -> bool:
    return isinstance(schema, type) and dataclasses.is_dataclass(schema)
