"""What a pickle file imports, read without unpickling it.

`pickletools.genops` parses opcodes and never calls anything, so a hostile file can be named
for what it would run (``posix.system``, ``builtins.exec``, a class of its own) without running
it. Used to tell a refused checkpoint (it holds code) from a damaged one.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# torch's legacy (non-zip) format is a run of pickles: magic number, protocol, system info,
# the object, the storage keys; raw tensor bytes follow.
MAX_PICKLES = 5
# Opcodes that push nothing a later STACK_GLOBAL could take as its module or name.
NO_PUSH = frozenset(
    {"FRAME", "PROTO", "MARK", "STOP", "POP", "POP_MARK", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}
)
UNKNOWN = "<an import computed while loading>"
# A zip member larger than this is not read (a checkpoint's data.pkl is kilobytes; its tensors
# are other members): a compressed bomb must not fill the memory.
MAX_MEMBER_BYTES = 256 * 2**20


def pickle_imports(path: str | Path) -> list[str] | None:
    """The globals (``module.name``) the pickles of ``path`` import, in order, duplicates
    dropped: a zip's ``*.pkl`` members (torch's format), else the file's successive pickles.
    None if no complete pickle can be read (damaged, or not a pickle)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [
                    m for m in archive.infolist()
                    if m.filename.endswith(".pkl") and m.file_size <= MAX_MEMBER_BYTES
                ]
                streams = [io.BytesIO(archive.read(m)) for m in members]
            found = [_imports(s, limit=1) for s in streams]
        else:
            with open(path, "rb") as stream:
                found = [_imports(stream, MAX_PICKLES)]
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError):
        return None
    if all(names is None for names in found):
        return None
    return list(dict.fromkeys(n for names in found if names for n in names))


def _imports(stream: IO[bytes], limit: int) -> list[str] | None:
    """Imports of up to ``limit`` successive pickles of ``stream``; None if none is whole."""
    names: list[str] = []
    whole = 0
    for _ in range(limit):
        try:
            found = list(_globals(pickletools.genops(stream)))
        except (ValueError, EOFError, UnicodeDecodeError, KeyError, IndexError):
            break  # the end of the pickles, or damage: keep what parsed whole
        names += found
        whole += 1
    return names if whole else None


def _python3_name(module: str, name: str = "") -> str:
    """``module.name`` as Python 3 (and torch) resolve it: protocol 2 writes ``__builtin__``
    for ``builtins`` and the like (pickle's own fix_imports table)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    else:
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _globals(ops: Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]) -> Iterator[str]:
    # STACK_GLOBAL (protocol 4+) takes its module and name from the stack: track the strings
    # pushed and memoized, enough for what a pickler writes.
    pushed: list[object] = []
    memo: dict[object, object] = {}
    for op, arg, _ in ops:
        name = op.name
        if name in ("GLOBAL", "INST"):
            yield _python3_name(*str(arg).split(" ", 1))
        elif name == "STACK_GLOBAL":
            module, attr = ([None, None, *pushed])[-2:]
            both = isinstance(module, str) and isinstance(attr, str)
            yield f"{module}.{attr}" if both else UNKNOWN
        elif name.startswith("EXT"):  # copyreg's extension registry: an import by number
            yield f"<extension code {arg}>"
        if name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif name not in NO_PUSH:
            pushed.append(arg if isinstance(arg, str) else None)
        del pushed[:-2]
