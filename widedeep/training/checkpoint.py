"""Safe checkpoint loading: tensors and plain containers only, one-line errors naming the file.

A checkpoint is a pickle, and unpickling can run arbitrary code. Every widedeep checkpoint read
(resume, best weights, inference) therefore goes through `load_checkpoint`, which uses
``torch.load(weights_only=True)``: only tensors, numbers, strings and plain containers come
back. Checkpoints stay loadable that way because the hyper-parameters saved in them are plain
(`plain`), and the rest of a Lightning checkpoint (loop, callback and optimizer states) is.

`load_checkpoint` and `plain` import nothing of Lightning, so inference code can use them
without the training stack (`model_from_checkpoint` builds the model with `lit.build_model`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# What each use needs from a checkpoint; a file without these keys is not one of ours.
REQUIRED = {
    "weights": ("state_dict",),
    "inference": ("state_dict", "hyper_parameters"),
    "resume": ("state_dict", "hyper_parameters", "optimizer_states", "loops"),
}
PLAIN_SCALARS = (str, int, float, bool, type(None))


def _one_line(err: BaseException) -> str:
    """The first line of an exception's message (torch's weights-only errors run to a page)."""
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def _weights_only_reason(err: pickle.UnpicklingError) -> str:
    """The one informative sentence of torch's weights-only error ("Unsupported global: ...")."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", str(err), re.DOTALL)
    return found.group(1).strip() if found else _one_line(err)


def load_checkpoint(path: str | Path, purpose: str = "inference") -> dict[str, Any]:
    """The checkpoint at ``path``, read with ``weights_only=True`` onto the CPU.

    ``purpose`` ("weights", "inference" or "resume") names the keys it must have. Raises
    `ValueError` naming the file if it is missing, truncated or not a checkpoint, holds pickled
    objects other than tensors and plain containers (refused, never executed), or lacks a key.
    """
    if purpose not in REQUIRED:
        raise ValueError(f"purpose must be one of {sorted(REQUIRED)}, got {purpose!r}")
    if not str(path):
        raise ValueError("no checkpoint file to load (an empty path)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _weights_only_reason(err)
        # weights_only refuses any class or function outside its allow-list before creating
        # it: the file pickles objects (code could run). Anything else is damage or garbage.
        if reason.startswith("Unsupported global"):
            raise ValueError(
                f"checkpoint {path}: refused, it holds pickled objects that are not tensors or "
                f"plain containers (untrusted or not a widedeep checkpoint): {reason}"
            ) from None
        raise ValueError(f"checkpoint {path}: corrupted or not a checkpoint ({reason})") from None
    except Exception as err:  # zip, EOF and unpickling errors of a truncated or foreign file
        raise ValueError(
            f"checkpoint {path}: corrupted or not a checkpoint "
            f"({type(err).__name__}: {_one_line(err)})"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path}: not a checkpoint (a {type(state).__name__})")
    missing = [key for key in REQUIRED[purpose] if key not in state]
    if missing:
        raise ValueError(f"checkpoint {path}: no {missing} (needed for {purpose})")
    return state


def resume_path(path: str | Path | None) -> str | None:
    """``path`` after checking it is a complete, safely loadable training checkpoint.

    Lightning's ``trainer.fit(ckpt_path=...)`` reads the file itself; call it with
    ``weights_only=True`` too. Checking here first turns a bad file into a one-line error before
    any data is loaded, instead of a traceback from inside the trainer.
    """
    if path is None or str(path) == "":
        return None
    load_checkpoint(path, "resume")
    return str(Path(path).expanduser())


def model_from_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The eval-mode `WideDeep` of a widedeep-train checkpoint and its hyper-parameters."""
    from widedeep.core.schema import Schema
    from widedeep.nn.build import build_model

    state = load_checkpoint(path, "inference")
    hp = state["hyper_parameters"]
    model = build_model(
        Schema.from_dict(hp["schema"]), hp["kind"], hp.get("wide") or {}, hp.get("deep") or {}
    )
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(
            f"checkpoint {path}: weights do not fit its model: {_one_line(err)}"
        ) from None
    return model.eval(), dict(hp)


def plain(value: Any, where: str = "hyper-parameters") -> Any:
    """``value`` as dicts, lists and scalars only (OmegaConf containers, tuples and other
    mappings converted), so that a checkpoint holding it loads with ``weights_only=True``.

    Raises `TypeError` naming the key for anything else (a Path, a dataclass, a module...).
    """
    if isinstance(value, PLAIN_SCALARS):
        return value
    try:  # OmegaConf is optional here: only config objects need it.
        from omegaconf import Container, OmegaConf

        if isinstance(value, Container):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the CLI only
        pass
    if isinstance(value, Mapping):
        return {plain(k, where): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where}: {type(value).__name__} cannot be stored in a checkpoint that loads with "
        "weights_only=True; pass plain values (str, int, float, bool, None, lists, dicts)"
    )
