"""The temporary files a download stages beside its targets, and their removal after a kill.

A file is fetched into a staging folder ``.<name>.<random>`` beside its target, an archive is
unpacked into one, a derived file is written to ``.<name>.<random>.tmp`` (`atomic_write`); each
is renamed into place or removed, unless the process is killed. `remove_leftovers` removes
those of a dataset's own targets, in their folders only, and `exclusive` keeps a second
download into the same data root from removing the staging files of one still running.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("widedeep.download")
# tempfile's random part: 8 characters of its alphabet; the .tmp suffix is atomic_write's.
_RANDOM = r"[a-z0-9_]{8}"


def staging_prefix(name: str) -> str:
    """The prefix of the temporary files and folders staged for the file ``name``."""
    return f".{name}."


def remove_leftovers(targets: Iterable[Path]) -> int:
    """Remove what killed downloads staged for ``targets`` (in the targets' folders only);
    log and return how many."""
    by_folder: dict[Path, set[str]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, set()).add(target.name)
    removed = 0
    for folder, names in by_folder.items():
        pattern = re.compile("|".join(
            rf"{re.escape(staging_prefix(n))}{_RANDOM}(\.tmp)?" for n in sorted(names)))
        found = [p for p in folder.iterdir() if pattern.fullmatch(p.name)] if folder.is_dir() \
            else []
        for path in found:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if found:
            log.info("removed %d temporary file(s) left by an interrupted download in %s",
                     len(found), folder)
        removed += len(found)
    return removed


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold an advisory lock on the folder ``root`` (waiting for another download into it to
    end); a no-op where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another download into %s to end", root)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
