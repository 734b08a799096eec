"""Unpack a downloaded archive into its folder with pooch, safely.

pooch's Unzip / Untar / Decompress do the extracting, into a staging folder beside the archive;
each member is then renamed into place, so none is ever half-written (pooch writes in place,
and keeps whatever it finds there on the next run). Before anything is extracted, every member
name is checked: one with ``..``, an absolute path or a drive, and any tar link or device, is
refused, as pooch does not (zipfile silently rewrites such names, and pooch gives tarfile its
"data" filter only from Python 3.12).
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import pooch

from widedeep.data._pooch import quiet
from widedeep.data.staging import staging_prefix

log = logging.getLogger("widedeep.download")
KINDS = ("zip", "tar.gz", "gz")


class UnpackError(ValueError):
    """An archive that cannot be read, has members that would land outside its folder, or is of
    an unknown kind."""


def unpack(kind: str, archive: Path, redo: bool = False) -> list[Path]:
    """Extract ``archive`` (``kind`` one of `KINDS`) into its folder; return its files.

    Members already there are kept unless ``redo``; if all are there, nothing is extracted.
    """
    try:
        return _unpack(kind, archive, redo)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:  # gzip's is an OSError
        raise UnpackError(f"{archive.name}: cannot unpack ({type(err).__name__}: {err})") from err


def _unpack(kind: str, archive: Path, redo: bool) -> list[Path]:
    names = members(kind, archive)
    dests = [archive.parent.joinpath(*PurePosixPath(name).parts) for name in names]
    todo = [(name, dest) for name, dest in zip(names, dests, strict=True)
            if redo or not dest.is_file()]
    if not todo:
        return dests
    with tempfile.TemporaryDirectory(prefix=staging_prefix(archive.name), dir=archive.parent) \
            as stage:
        _extract(kind, archive, Path(stage).name, names)
        for name, dest in todo:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(stage).joinpath(*PurePosixPath(name).parts), dest)
    log.info("unpacked %d file(s) into %s", len(todo), archive.parent)
    return dests


def members(kind: str, archive: Path) -> list[str]:
    """The names of the files in ``archive``, each checked to stay inside its folder."""
    if kind == "gz":
        return [archive.name.removesuffix(".gz")]
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            names = [info.filename for info in zf.infolist() if not info.is_dir()]
    elif kind == "tar.gz":
        with tarfile.open(archive, "r:gz") as tf:
            entries = tf.getmembers()
        links = [m.name for m in entries if not (m.isfile() or m.isdir())]
        if links:
            raise UnpackError(f"{archive.name}: refusing links or special files {links[:3]}")
        names = [m.name for m in entries if m.isfile()]
    else:
        raise UnpackError(f"{archive.name}: unknown unpack kind {kind!r} ({', '.join(KINDS)})")
    for name in names:
        parts = PurePosixPath(name).parts
        if not parts or parts[0] == "/" or ".." in parts or "\\" in name or ":" in parts[0]:
            raise UnpackError(f"{archive.name}: refusing unsafe member path {name!r}")
    return names


def _extract(kind: str, archive: Path, stage: str, names: list[str]) -> None:
    """Extract everything into ``stage`` (a folder beside ``archive``, named relative to it,
    as pooch's processors take it)."""
    if kind == "gz":
        processor = pooch.Decompress(method="gzip", name=f"{stage}/{names[0]}")
    else:
        processor = (pooch.Unzip if kind == "zip" else pooch.Untar)(extract_dir=stage)
    with quiet():
        processor(str(archive), "download", None)

