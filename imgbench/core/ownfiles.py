"""Opening a store's own files: never through a symlink, never blocking on a FIFO or device.

A store read from an untrusted source may have a symlink where a data file should be
(a read would return, or LMDB's lock would overwrite, a file outside the store) or a FIFO
(an open would block forever). Every backend opens its files through :func:`open_own`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from imgbench.core.errors import CorruptStoreError

#: read-only, not following a final symlink, not blocking on a FIFO, not inherited by children
OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def open_own(name: str | Path, dir_fd: int | None = None, what: str | None = None,
             flags: int = OPEN_READ) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``name`` (relative to ``dir_fd`` if given).

    FileNotFoundError, NotADirectoryError and IsADirectoryError propagate (callers know what
    a missing file means to them); a symlink, FIFO, device or socket is a CorruptStoreError
    naming ``what`` (default: ``name``)."""
    what = str(name) if what is None else what
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptStoreError(f"{what} is a symlink, not a regular file; a store's own files never are") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
            raise CorruptStoreError(f"{what} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(name))
        raise CorruptStoreError(f"{what} is not a regular file")
    return fd, st.st_size


def read_fd(fd: int, size: int, offset: int = 0) -> bytes:
    """``size`` bytes of ``fd`` from ``offset`` (fewer if the file is shorter)."""
    parts, got = [], 0
    while got < size:
        part = os.pread(fd, size - got, offset + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_own(name: str | Path, limit: int, dir_fd: int | None = None, what: str | None = None) -> bytes:
    """Up to ``limit`` bytes of the regular file ``name`` (see :func:`open_own` for errors)."""
    fd, size = open_own(name, dir_fd, what)
    try:
        return read_fd(fd, min(size, limit))
    finally:
        os.close(fd)
