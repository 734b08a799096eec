"""Atomic checkpoint saves on any filesystem: a kill, a full disk or a read-only folder never
leaves a truncated checkpoint, and the error says which file and why.

Lightning's default saving goes through fsspec: a temporary file in the system temp folder, then
a move, which across filesystems (a run folder on a tmpfs, NFS or another disk) is a copy over
the old file. A kill during that copy left ``last.ckpt`` empty; a full disk left it partial; a
failed move into a read-only folder was swallowed. `AtomicCheckpointIO` (passed to the Trainer
as a plugin) writes every checkpoint instead to a temporary file beside the target, flushes and
fsyncs it, renames it over the target (``os.replace``, atomic within one filesystem) and fsyncs
the folder so the rename survives a power cut. On any failure the temporary file is removed;
one left by a SIGKILL (which no code can handle) is removed by `remove_stale_temporaries` at the
next run.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO

log = logging.getLogger("widedeep")

SUFFIX = ".tmp"  # temporaries are ``.<name>.<random><SUFFIX>`` beside ``<name>``


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the previous file at that path, if any, is intact.

    An `OSError` (with the cause's errno): the command line reports it as one line, exit 2."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return str(self.strerror)


def _temporary_name(target: Path) -> str:
    return f".{target.name}."


def _reason(err: OSError) -> str:
    if err.errno == errno.ENOSPC:
        return "no space left on device (ENOSPC)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the folder is not writable ({err.strerror or type(err).__name__})"
    return err.strerror or str(err)


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives (mkstemp's 0600 would hide the file from the
    group, unlike the checkpoints Lightning wrote)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; a filesystem that cannot fsync a folder (EINVAL) is let be."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


def write_checkpoint(checkpoint: dict[str, Any], file) -> None:
    """Serialise ``checkpoint`` into the open binary ``file`` (a seam for fault-injection tests)."""
    torch.save(checkpoint, file)


def atomic_save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` so that ``path`` is always either the old or the new file.

    Raises `CheckpointSaveError` naming the path and the reason (ENOSPC, a read-only folder...).
    """
    target = Path(path)
    folder = target.parent
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_name(target), suffix=SUFFIX, dir=folder)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), _file_mode())
            write_checkpoint(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
        tmp = None
        _fsync_folder(folder)
    except OSError as err:
        raise CheckpointSaveError(
            err.errno,
            f"checkpoint {target}: not saved, {_reason(err)}; the previous file there, if any, "
            "is kept",
        ) from None
    finally:  # any failure, KeyboardInterrupt included: never leave a temporary behind
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def check_writable(folder: str | Path) -> None:
    """Create ``folder`` if needed and prove a file can be created and renamed in it, so that a
    read-only or immutable checkpoint folder fails before training, not after it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=SUFFIX, dir=folder)
        os.close(fd)
        try:
            os.replace(probe, probe + ".renamed")
        finally:
            Path(probe).unlink(missing_ok=True)
            Path(probe + ".renamed").unlink(missing_ok=True)
    except OSError as err:
        raise CheckpointSaveError(
            err.errno, f"checkpoint folder {folder}: cannot save checkpoints, {_reason(err)}"
        ) from None


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries a killed save left in ``folder`` (``.<name>.*.tmp``); return them.

    Call it before training starts, when no save of this run can be under way."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".*{SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) of interrupted checkpoint saves in %s",
                 len(stale), folder)
    return stale


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with `atomic_save` for local paths (reading is
    unchanged; widedeep reads its checkpoints through `widedeep.training.checkpoint`)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint takes no storage_options "
                f"(got {storage_options!r})"
            )
        if "://" in str(path) and not str(path).startswith("file://"):
            # A remote URL (s3://...): object stores replace whole objects; Lightning's way.
            return super().save_checkpoint(checkpoint, path)
        atomic_save(checkpoint, str(path).removeprefix("file://"))
