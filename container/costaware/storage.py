"""Writing files so that a full disk, a read-only volume or a kill never leaves half of one.

On SageMaker the model, the output and the checkpoints share one storage volume
(``VolumeSizeInGB``): when it fills up, a write fails part-way. Every file the training job keeps
is written to a temporary name in its directory, flushed to disk and renamed into place (atomic on
POSIX); a failed write removes its temporary file, so that it neither keeps the disk full nor is
uploaded with the model. :func:`reason` turns the ``OSError`` into the job's one-line failure reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

TEMPORARY = ".tmp"  # in every temporary file's name: ``.NAME.tmpPID``


def temporary_path(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{TEMPORARY}{os.getpid()}")


def write_temporary(path: str, data: bytes) -> str:
    """``data`` in a temporary file beside ``path``, flushed to disk; its path. On failure the
    temporary file is removed and the ``OSError`` names ``path``, not the temporary name."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None
    return tmp


def atomic_write(path: str, data: bytes) -> None:
    """``path`` holds ``data`` afterwards, or what it held before: never part of ``data``."""
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None


def write_all_or_none(directory: str, files: dict[str, bytes]) -> None:
    """Write every file of ``files`` (name -> content) into ``directory``, or none of them: all are
    written to temporary names first and renamed into place only when all are on disk; on a
    failure the temporary files, and any file this call had already renamed into place, are
    removed."""
    os.makedirs(directory, exist_ok=True)
    temporaries: dict[str, str] = {}
    placed: list[str] = []
    try:
        for name, data in files.items():
            temporaries[name] = write_temporary(os.path.join(directory, name), data)
        for name, tmp in temporaries.items():
            os.replace(tmp, os.path.join(directory, name))
            placed.append(name)
        fsync_directory(directory)
    except BaseException:
        for path in [*temporaries.values(), *(os.path.join(directory, n) for n in placed)]:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise


def fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):  # not every file system allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_writable(directory: str) -> None:
    """Create ``directory`` if needed and a file in it (removed again); the ``OSError`` of a
    read-only volume, a missing permission or a directory that cannot be made."""
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".costaware-probe", suffix=TEMPORARY, dir=directory)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, directory) from None


TRAINING_VOLUME = ("the model, output and checkpoints share the job's storage volume; give the "
                   "job more (VolumeSizeInGB)")
PROCESSING_VOLUME = ("the processing job's outputs share its storage volume; give it more "
                     "(VolumeSizeInGB of its ClusterConfig)")


def reason(exc: OSError, volume: str = TRAINING_VOLUME) -> str:
    """A one-line failure reason for a file or directory that could not be written (or read): the
    path first, then what is wrong (and, for a full disk, what to change: ``volume``, the job's
    storage as its kind of job configures it)."""
    path = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path}: cannot be written: {what}: {volume}"
    if exc.errno == errno.EROFS:
        return f"{path}: cannot be written: {what}"
    return f"{path}: {what}"
