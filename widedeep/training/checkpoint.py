"""Safe checkpoint loading: tensors and plain containers only, one-line errors naming the file.

A checkpoint is a pickle, and unpickling can run arbitrary code. Every widedeep checkpoint read
(resume, best weights, inference) therefore goes through `load_checkpoint`, which uses
``torch.load(weights_only=True)``: only tensors, numbers, strings and plain containers come
back. Checkpoints stay loadable that way because the hyper-parameters saved in them are plain
(`plain`), and the rest of a Lightning checkpoint (loop, callback and optimizer states) is.
A file torch rejects is either refused (its pickles import code: `_load_error`) or damaged, in
one line naming it; `model_from_checkpoint` also refuses a model no machine memory could hold.

`load_checkpoint` and `plain` import nothing of Lightning, so inference code can use them
without the training stack (`model_from_checkpoint` builds the model with `lit.build_model`).
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from widedeep.core.pickles import pickle_imports
from widedeep.core.schema import Schema

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


class UntrustedCheckpointError(ValueError):
    """A checkpoint that pickles code (functions or classes to call while loading): refused."""


def _allowed(name: str) -> bool:
    """``name`` is a global torch's weights-only unpickler may load (tensor rebuilders, ...)."""
    from torch import _weights_only_unpickler as unpickler

    try:  # private to torch, as used by torch.serialization.get_unsafe_globals_in_checkpoint
        allowed = {*unpickler._get_allowed_globals(), *unpickler._get_user_allowed_globals()}
    except AttributeError:  # pragma: no cover - a torch without them: torch's own rebuilders
        return name.startswith("torch._utils._rebuild") or name == "collections.OrderedDict"
    return name in allowed


def _shown(names: list[str], most: int = 3) -> str:
    """The first ``most`` names, escaped and cut short (they come from the file)."""
    shown = [n[:80].encode("unicode_escape").decode("ascii") for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more


def _torch_reason(err: BaseException) -> str:
    """Why torch could not load a file, without its advice to load it unsafely: torch re-raises
    its weights-only unpickler's error with that advice added, the original as the context."""
    inner = err.__context__ if isinstance(err, pickle.UnpicklingError) else None
    if isinstance(inner, pickle.UnpicklingError):
        return _one_line(inner)
    if "Weights only load failed" in str(err):
        return "rejected by torch's weights-only unpickler"
    return f"{type(err).__name__}: {_one_line(err)}"


def _load_error(path: Path, err: BaseException) -> ValueError:
    """The one-line error for a file torch.load(weights_only=True) rejected: refused when its
    pickles import anything outside torch's allow-list (read without running them, whatever
    torch's wording: a blocked module, an unsupported global, an opcode it does not read),
    else damaged or not a checkpoint."""
    imports = pickle_imports(path) or []
    code = [name for name in imports if not _allowed(name)]
    if code:
        return UntrustedCheckpointError(
            f"checkpoint {path}: refused: the file holds pickled code objects ({_shown(code)}); "
            "widedeep never loads such files"
        )
    return ValueError(f"checkpoint {path}: corrupted or not a checkpoint ({_torch_reason(err)})")


def _not_a_file(path: Path, purpose: str) -> ValueError:
    """No file at ``path``: a directory (a run's? then its checkpoints) or nothing."""
    if not path.is_dir():
        return ValueError(f"checkpoint {path}: no such file")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    best, last = folder / "best.ckpt", folder / "last.ckpt"
    if purpose == "resume" and last.is_file():
        hint = f"; resume from its latest state: resume_from={last}"
    elif best.is_file() or last.is_file():
        hint = f"; its checkpoints are {best} (the best weights) and {last} (the latest state)"
    else:
        hint = " (and holds no best.ckpt or last.ckpt)"
    return ValueError(f"checkpoint {path}: a directory, not a file{hint}")


def load_checkpoint(path: str | Path, purpose: str = "inference") -> dict[str, Any]:
    """The checkpoint at ``path``, read with ``weights_only=True`` onto the CPU.

    ``purpose`` ("weights", "inference" or "resume") names the keys it must have. Raises
    `ValueError` naming the file if it is missing (or a directory), truncated or not a
    checkpoint, or lacks a key; `UntrustedCheckpointError` (a ValueError) if it pickles code
    objects (refused, never executed).
    """
    if purpose not in REQUIRED:
        raise ValueError(f"purpose must be one of {sorted(REQUIRED)}, got {purpose!r}")
    if not str(path):
        raise ValueError("no checkpoint file to load (an empty path)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise _not_a_file(path, purpose)
    try:
        with warnings.catch_warnings():  # a pickle protocol torch did not write: refused below
            warnings.filterwarnings("ignore", "Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refusals, and zip, EOF and unpickling errors of damaged files
        raise _load_error(path, err) from None
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


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux or macOS
        return None


def table_bytes(schema: Schema, kind: str, deep: Mapping[str, Any]) -> tuple[int, str, int]:
    """(bytes, name, ids): a lower bound on the bytes of the model's id tables at float32 (the
    wide tower: one weight per id of every field, cross and bag; the deep tower: an embedding
    of its dimension per id of every field and bag), and its largest table's name and ids."""
    dims = dict(deep.get("embedding_dims") or {})
    total, largest = 0, ("", 0)
    for group in ("categorical", "crosses", "bags"):
        for field in getattr(schema, group):
            per_id = 1 if kind in ("wide", "wide_deep") else 0
            if kind in ("deep", "wide_deep") and group != "crosses":
                per_id += int(dims.get(field.name, deep.get("embedding_dim", 1)))
            total += 4 * per_id * field.cardinality
            largest = max(largest, (field.name, field.cardinality), key=lambda x: x[1])
    return total, *largest


def _check_size(path: str | Path, schema: Schema, hp: Mapping[str, Any]) -> None:
    """Refuse a model the machine could never hold, before allocating it (hyper-parameters
    asking for 10^13 ids would otherwise fail inside the allocator, or swap it to death)."""
    need, name, ids = table_bytes(schema, hp["kind"], hp.get("deep") or {})
    memory = physical_memory()
    if memory is not None and need > memory:
        raise ValueError(
            f"checkpoint {path}: refused to build its model: its hyper-parameters ask for id "
            f"tables of at least {need / 2**30:,.1f} GiB (the largest: {name!r}, {ids:,} ids), "
            f"more than this machine's {memory / 2**30:,.1f} GiB of memory"
        )


def model_from_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The eval-mode `WideDeep` of a widedeep-train checkpoint and its hyper-parameters."""
    from widedeep.nn.build import build_model

    state = load_checkpoint(path, "inference")
    hp = state["hyper_parameters"]
    try:
        schema = Schema.from_dict(hp["schema"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"checkpoint {path}: its hyper-parameters hold no valid schema ({_one_line(err)})"
        ) from None
    _check_size(path, schema, hp)
    combine = bool((hp.get("joint") or {}).get("combine"))
    model = build_model(schema, hp["kind"], hp.get("wide") or {}, hp.get("deep") or {}, combine)
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
