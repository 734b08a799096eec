"""A finished run's files: where its checkpoint is, and its YAML read as plain data only.

A run directory (widedeep-train's output) holds ``config.yaml``, ``.hydra/overrides.yaml``,
``checkpoints/best.ckpt`` and ``last.ckpt``, and ``preprocessor/``. widedeep-train writes plain
YAML; a run copied from elsewhere may hold more: `read_run_yaml` refuses any node tagged with a
type the safe loader does not know (``!!python/object/apply:os.system [...]``, any ``!tag``)
before anything is constructed, in one line naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# The tags yaml's safe loader constructs: scalars, lists, maps, timestamps, binary, sets.
SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)
CORE_PREFIX = "tag:yaml.org,2002:"


def checkpoint_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """(checkpoint file, run directory) from a checkpoint file or a run directory (its
    ``checkpoints/best.ckpt``). Raises `FileNotFoundError` naming what is missing."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.ckpt"
        if not best.is_file():
            raise FileNotFoundError(
                f"checkpoint {path}: a directory without checkpoints/best.ckpt (give a run "
                "directory or a .ckpt file)"
            )
        path = best
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run


def read_run_yaml(path: str | Path, what: str = "the run's resolved config") -> Any:
    """The OmegaConf container of a run's YAML file ``path`` (``what`` it is, for messages).

    Raises `FileNotFoundError` if it is missing or a directory, `ValueError` if it is not
    YAML or holds a tag the safe loader does not construct (refused, never constructed).
    """
    from omegaconf import OmegaConf

    path = Path(path).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"{path}: a directory, not a file ({what})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
    for tag, line in _tags(root):
        if tag not in SAFE_TAGS:
            shown = tag.replace(CORE_PREFIX, "!!", 1)[:80].encode("unicode_escape").decode()
            raise ValueError(
                f"{path}: refused: line {line} is tagged {shown}, an object widedeep never "
                f"constructs ({what} is plain YAML)"
            )
    return OmegaConf.load(path)


def _tags(root: yaml.Node | None) -> Iterator[tuple[str, int]]:
    """(tag, line) of every node, each node once (an alias may make the graph cyclic)."""
    stack, seen = [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node.tag, node.start_mark.line + 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in node.value for item in pair)
