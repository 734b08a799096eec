"""Fetch the public datasets this project reads, verified, into the data root.

Each `SOURCES` entry (`widedeep.data.sources`) says where a dataset comes from and which files
a download gives. Datasets that must be fetched by hand (Criteo, Avazu) raise
`ManualDownloadRequired` with instructions and download nothing.

A file is streamed to a temporary file beside its target while hashed, checked, then renamed
into place: a target is never half-written and a checksum mismatch leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from widedeep.core.io import atomic_write
from widedeep.data.sources import Derived, RemoteFile, get_source, instructions

log = logging.getLogger("widedeep.download")
CHUNK = 1 << 20
TIMEOUT_S = 60.0


class DownloadError(RuntimeError):
    """A file could not be fetched, verified or unpacked."""


class ChecksumError(DownloadError):
    """Downloaded bytes differ from the published checksum (nothing was written)."""


class ManualDownloadRequired(DownloadError):
    """The dataset's terms call for a download by hand; ``instructions`` says how."""

    def __init__(self, name: str, instructions: str) -> None:
        super().__init__(instructions)
        self.name = name
        self.instructions = instructions


def download_dataset(
    name: str, root: Path, base_url: str | None = None, force: bool = False
) -> list[Path]:
    """Fetch and verify dataset ``name`` under ``root``; return the files it provides.

    ``base_url`` replaces the official host (a mirror serving each file under its target's
    file name, e.g. ``http://127.0.0.1:8000/d`` or ``file:///dir``). Files already present with
    the right checksum are kept unless ``force``. Raises `ManualDownloadRequired` for datasets
    that must be fetched by hand (unless all their files are already in place), `ChecksumError`
    on a mismatch and `DownloadError` when a file cannot be fetched.
    """
    source = get_source(name)
    root = Path(root)
    if not source.automated:
        missing = [root / f.target for f in source.files if not _present(f, root / f.target)]
        if missing:
            raise ManualDownloadRequired(name, instructions(name, root))
        return [root / f.target for f in source.files]
    paths: list[Path] = []
    for remote in source.files:
        paths += _download_file(remote, root, base_url, force)
    return paths + [_derive(item, root, force) for item in source.derived]


def file_digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _mismatch(remote: RemoteFile, sha: str, md5: str) -> str | None:
    if remote.sha256 and sha != remote.sha256:
        return f"expected sha256 {remote.sha256}, got {sha}"
    if remote.md5 and md5 != remote.md5:
        return f"expected md5 {remote.md5}, got {md5}"
    return None


def _present(remote: RemoteFile, target: Path) -> bool:
    """True if ``target`` exists and matches its checksum (when one is known)."""
    if not target.is_file():
        return False
    problem = _mismatch(remote, *file_digests(target))
    if problem:
        log.warning("%s: present but %s", target, problem)
    return problem is None


def _stream(url: str, dest: Path) -> tuple[str, str]:
    """Copy ``url`` into ``dest`` in chunks; return its (sha256, md5)."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": "widedeep-data"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp, open(dest, "wb") as out:
            while chunk := resp.read(CHUNK):
                sha.update(chunk)
                md5.update(chunk)
                out.write(chunk)
    except (OSError, http.client.HTTPException) as err:
        http_error = isinstance(err, urllib.error.HTTPError)
        reason = err if http_error else getattr(err, "reason", None) or err
        raise DownloadError(f"cannot fetch {url}: {reason}") from err
    return sha.hexdigest(), md5.hexdigest()


def _download_file(remote: RemoteFile, root: Path, base_url: str | None, force: bool) -> list[Path]:
    target = root / remote.target
    url = f"{base_url.rstrip('/')}/{target.name}" if base_url else remote.url
    fresh = force or not _present(remote, target)
    if fresh:
        log.info("downloading %s -> %s", url, target)

        def fetch(tmp: Path) -> None:
            sha, md5 = _stream(url, tmp)
            problem = _mismatch(remote, sha, md5)
            if problem:
                raise ChecksumError(
                    f"checksum mismatch for {target.name} from {url}: {problem}; nothing written"
                )
            if not (remote.sha256 or remote.md5):
                log.info("%s: no published checksum; sha256 %s", target.name, sha)

        atomic_write(target, fetch)
    else:
        verified = "verified" if remote.sha256 or remote.md5 else "no checksum to verify"
        log.info("%s: present (%s), skipped", target, verified)
    paths = [target]
    if remote.unpack:
        paths += _unpack(remote, target, target.parent, fresh)
    return paths


def _derive(item: Derived, root: Path, force: bool) -> Path:
    """Build ``item`` unless present (and matching its checksum, when it has one)."""
    dest = root / item.target
    if not force and dest.is_file():
        if not item.sha256:
            log.info("%s: present, no checksum to compare; kept (force replaces it)", dest)
            return dest
        if file_digests(dest)[0] == item.sha256:
            return dest
    data = item.build(root)
    sha = hashlib.sha256(data).hexdigest()
    if item.sha256 and sha != item.sha256:
        raise ChecksumError(f"checksum mismatch for built {dest.name}: expected sha256 "
                            f"{item.sha256}, got {sha}; nothing written")
    atomic_write(dest, lambda tmp: tmp.write_bytes(data))
    log.info("built %s", dest)
    return dest


def _unpack(remote: RemoteFile, archive: Path, into: Path, redo: bool) -> list[Path]:
    """Extract ``archive`` into ``into``; each member is written atomically."""
    kind = remote.unpack
    if kind == "gz":
        with gzip.open(archive, "rb") as src:
            return _write_members([(archive.name.removesuffix(".gz"), lambda: src)], into, redo)
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            items = [(i.filename, partial(zf.open, i)) for i in zf.infolist() if not i.is_dir()]
            return _write_members(items, into, redo, archive.name)
    if kind == "tar.gz":
        with tarfile.open(archive, "r:gz") as tf:
            items = [(m.name, partial(tf.extractfile, m)) for m in tf.getmembers() if m.isfile()]
            return _write_members(items, into, redo, archive.name)
    raise ValueError(f"{archive.name}: unknown unpack kind {kind!r} (zip, tar.gz or gz)")


def _write_members(
    items: list[tuple[str, Callable[[], IO[bytes] | None]]],
    into: Path,
    redo: bool,
    archive: str = "",
) -> list[Path]:
    relative = []
    for member, _ in items:  # check every name before writing anything
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
            raise DownloadError(f"{archive}: refusing unsafe member path {member!r}")
        relative.append(parts)
    paths = []
    for parts, (_, open_member) in zip(relative, items, strict=True):
        dest = into.joinpath(*parts)
        if redo or not dest.exists():

            def copy(tmp: Path, open_member=open_member) -> None:
                with open_member() as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)

            atomic_write(dest, copy)
        paths.append(dest)
    log.info("unpacked %d file(s) into %s", len(paths), into)
    return paths
