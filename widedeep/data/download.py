"""Fetch the public datasets this project reads, verified, into the data root.

Each `SOURCES` entry (`widedeep.data.sources`) says where a dataset comes from and which files
a download gives. Datasets that must be fetched by hand (Criteo, Avazu) raise
`ManualDownloadRequired` with instructions and download nothing.

pooch fetches: its downloaders (plus a file:// one here, which pooch lacks), the checksum check,
retries, and a temporary file moved into place only once verified. Each file is fetched into a
staging folder beside its target and then renamed into place, so a target is never half-written,
a checksum mismatch leaves nothing behind, and ``force`` (which pooch lacks) replaces a file
only once its replacement is verified. Archives are unpacked by pooch's Unzip / Untar /
Decompress into a staging folder too, after a check that refuses members named with ``..`` or
an absolute path and tar links: zipfile silently rewrites such names, and pooch gives tarfile
its "data" filter only from Python 3.12.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pooch

from widedeep.core.io import atomic_write
from widedeep.data._pooch import copy_file_url, quiet
from widedeep.data.sources import Derived, RemoteFile, get_source, instructions
from widedeep.data.staging import exclusive, remove_leftovers, staging_prefix
from widedeep.data.unpack import UnpackError, unpack

log = logging.getLogger("widedeep.download")
CHUNK = 1 << 20
TIMEOUT_S = 60.0
RETRIES = 2  # more attempts after a network error or a checksum mismatch (pooch waits 1 s, 2 s)

Downloader = Callable[[str, str, object], None]  # pooch's: (url, output file, Pooch)


class DownloadError(OSError):
    """A file could not be fetched, verified or unpacked (an OSError, like urllib's URLError)."""


class ChecksumError(DownloadError):
    """Downloaded bytes differ from the published checksum (nothing was written)."""


class ManualDownloadRequired(DownloadError):
    """The dataset's terms call for a download by hand; ``instructions`` says how."""

    def __init__(self, name: str, instructions: str) -> None:
        super().__init__(instructions)
        self.name = name
        self.instructions = instructions


def download_dataset(
    name: str,
    root: Path,
    base_url: str | None = None,
    force: bool = False,
    retries: int = RETRIES,
) -> list[Path]:
    """Fetch and verify dataset ``name`` under ``root``; return the files it provides.

    ``base_url`` replaces the official host (a mirror serving each file under its target's
    file name, e.g. ``http://127.0.0.1:8000/d`` or ``file:///dir``). Files already present with
    the right checksum are kept unless ``force``; a failed fetch is tried ``retries`` more
    times. Raises `ManualDownloadRequired` for datasets that must be fetched by hand (unless
    all their files are already in place), `ChecksumError` on a mismatch and `DownloadError`
    when a file cannot be fetched or unpacked; their message starts ``download <name>: <url>``.
    """
    source = get_source(name)
    root = Path(root)
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if not source.automated:
        missing = [root / f.target for f in source.files if not _present(f, root / f.target)]
        if missing:
            raise ManualDownloadRequired(name, instructions(name, root))
        return [root / f.target for f in source.files]
    paths: list[Path] = []
    targets = [root / t for t in [*(f.target for f in source.files),
                                  *(d.target for d in source.derived)]]
    try:
        with exclusive(root):
            remove_leftovers(targets)
            for remote in source.files:
                paths += _download_file(remote, root, base_url, force, retries)
            return paths + [_derive(item, root, force) for item in source.derived]
    except DownloadError as err:
        raise type(err)(f"download {name}: {err}") from err


def known_hash(remote: RemoteFile) -> str | None:
    """The published checksum in pooch's form: ``sha256:...``, else ``md5:...``, else None."""
    if remote.sha256:
        return f"sha256:{remote.sha256}"
    return f"md5:{remote.md5}" if remote.md5 else None


def git_blob_sha1(path: Path) -> str:
    """The file's git blob hash (what ``git hash-object`` prints and GitHub's tree lists)."""
    digest = hashlib.sha1(b"blob %d\0" % Path(path).stat().st_size)
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _present(remote: RemoteFile, target: Path) -> bool:
    """True if ``target`` exists and matches its checksum (when one is known)."""
    if not target.is_file():
        return False
    if (expected := known_hash(remote)) is None:
        if remote.git_sha1 and (actual := git_blob_sha1(target)) != remote.git_sha1:
            log.warning("%s: present but expected git blob SHA-1 %s, got %s", target,
                        remote.git_sha1, actual)
            return False
        return True
    algorithm, digest = expected.split(":")
    actual = pooch.file_hash(str(target), alg=algorithm)
    if actual != digest:
        log.warning("%s: present but expected %s %s, got %s", target, algorithm, digest, actual)
    return actual == digest


def _download_file(
    remote: RemoteFile, root: Path, base_url: str | None, force: bool, retries: int
) -> list[Path]:
    target = root / remote.target
    url = f"{base_url.rstrip('/')}/{target.name}" if base_url else remote.url
    fresh = force or not _present(remote, target)
    if fresh:
        log.info("downloading %s -> %s", url, target)
        _fetch(url, target, known_hash(remote), retries, remote.git_sha1)
    else:
        verified = "verified" if known_hash(remote) or remote.git_sha1 else "no checksum to verify"
        log.info("%s: present (%s), skipped", target, verified)
    paths = [target]
    if remote.unpack:
        try:
            paths += unpack(remote.unpack, target, redo=fresh)
        except UnpackError as err:
            raise DownloadError(str(err)) from err
    return paths


def _fetch(url: str, target: Path, expected: str | None, retries: int,
           git_sha1: str | None = None) -> None:
    """Have pooch fetch ``url`` into a staging folder beside ``target``, check it (``expected``
    by pooch, else ``git_sha1``), then rename it there."""
    import requests

    downloader = _downloader(url, 1 + retries)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=staging_prefix(target.name), dir=target.parent) \
            as stage:
        fetcher = pooch.create(path=stage, base_url="", registry={target.name: expected},
                               urls={target.name: url}, retry_if_failed=retries)
        try:
            with quiet():
                staged = fetcher.fetch(target.name, downloader=downloader)
        except (OSError, requests.RequestException) as err:  # before ValueError: InvalidURL is both
            raise DownloadError(f"{url}: {_cause(err)}") from err
        except ValueError as err:  # pooch's checksum mismatch; its tail says what it deleted
            raise ChecksumError(f"{url}: {str(err).split('. Deleted')[0]}; nothing written") \
                from err
        if expected is None and git_sha1 and (actual := git_blob_sha1(Path(staged))) != git_sha1:
            raise ChecksumError(f"{url}: git blob SHA-1 of downloaded file ({target.name}) does "
                                f"not match: expected git blob SHA-1 {git_sha1} but got {actual}"
                                "; nothing written")
        if expected is None:
            log.info("%s: no published sha256; sha256 %s", target.name, pooch.file_hash(staged))
        os.replace(staged, target)


def _downloader(url: str, attempts_in_all: int) -> Downloader:
    """pooch's downloader for ``url``'s scheme, logging each retry."""
    scheme = urllib.parse.urlsplit(url).scheme
    kinds: dict[str, Callable[[], Downloader]] = {
        "http": lambda: pooch.HTTPDownloader(timeout=TIMEOUT_S, chunk_size=CHUNK),
        "ftp": lambda: pooch.FTPDownloader(timeout=TIMEOUT_S, chunk_size=CHUNK),
        "file": lambda: copy_file_url,
    }
    kinds["https"] = kinds["http"]
    if scheme not in kinds:
        raise DownloadError(f"{url}: unsupported URL scheme (use {', '.join(sorted(kinds))})")
    inner, attempts = kinds[scheme](), count(1)

    def download(url: str, output_file: str, pup: object) -> None:
        if (attempt := next(attempts)) > 1:
            log.info("%s: retrying (attempt %d of %d)", url, attempt, attempts_in_all)
        inner(url, output_file, pup)

    return download


def _cause(err: BaseException) -> str:
    """What went wrong in a few words: the HTTP status, a timeout, or the innermost error."""
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}"
    if isinstance(err, requests.Timeout):
        return f"no answer within {TIMEOUT_S:g} s"
    root = err
    for _ in range(20):  # requests -> urllib3 -> socket: the last one names the reason
        if (inner := root.__cause__ or root.__context__) is None:
            break
        root = inner
    what = ("cannot connect" if isinstance(err, requests.ConnectionError)
            else "transfer failed" if isinstance(err, requests.RequestException)
            else "cannot read")
    return f"{what} ({type(root).__name__}: {root})"


def _derive(item: Derived, root: Path, force: bool) -> Path:
    """Build ``item`` unless present (and matching its checksum, when it has one)."""
    dest = root / item.target
    if not force and dest.is_file():
        if not item.sha256:
            log.info("%s: present, no checksum to compare; kept (force replaces it)", dest)
            return dest
        if pooch.file_hash(str(dest)) == item.sha256:
            return dest
    data = item.build(root)
    sha = hashlib.sha256(data).hexdigest()
    if item.sha256 and sha != item.sha256:
        raise ChecksumError(f"checksum mismatch for built {dest.name}: expected sha256 "
                            f"{item.sha256}, got {sha}; nothing written")
    atomic_write(dest, lambda tmp: tmp.write_bytes(data))
    log.info("built %s", dest)
    return dest
