"""Opening a store's own files: never through a symlink, never blocking on a FIFO or device.

A store read from an untrusted source may have a symlink where a data file should be
(a read would return, or LMDB's lock would overwrite, a file outside the store) or a FIFO
(an open would block forever). Every backend opens the files it reads or writes itself
through :func:`open_own` (or :func:`read_own`, :func:`write_own`), and the store's
directory through :func:`open_dir`. (Engines that open their own files, LMDB, HDF5 and
zarr's writers, are checked by their backends.)
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from imgbench.core.errors import CorruptStoreError
from imgbench.core.fileio import pwrite_all, read_fd

#: read-only, not following a final symlink, not blocking on a FIFO, not inherited by children
OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
#: a file the writer creates; failing if anything (a leftover, a planted symlink) has its name
CREATE_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL
#: a file the writer creates or replaces whole
REPLACE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

__all__ = ["CREATE_NEW", "OPEN_READ", "REPLACE", "open_dir", "open_own", "read_fd", "read_own", "write_own"]


def open_dir(path: str | Path) -> int:
    """A descriptor of the store directory ``path``, to open its files relative to (NotADirectoryError,
    FileNotFoundError propagate). Holding it keeps a reader on the store it opened even if a writer
    swaps a new one in at ``path``."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_own(name: str | Path, dir_fd: int | None = None, what: str | None = None,
             flags: int = OPEN_READ, mode: int = 0o666) -> tuple[int, int]:
    """(descriptor, size) of the regular file ``name`` (relative to ``dir_fd`` if given).

    ``flags`` may create the file (``CREATE_NEW``, ``REPLACE``; ``mode`` before the umask).
    FileNotFoundError, NotADirectoryError, IsADirectoryError and FileExistsError propagate
    (callers know what they mean to them); a symlink, FIFO, device or socket is a
    CorruptStoreError naming ``what`` (default: ``name``)."""
    what = str(name) if what is None else what
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
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


def read_own(name: str | Path, limit: int, dir_fd: int | None = None, what: str | None = None) -> bytes:
    """Up to ``limit`` bytes of the regular file ``name`` (see :func:`open_own` for errors)."""
    fd, size = open_own(name, dir_fd, what)
    try:
        return read_fd(fd, min(size, limit))
    finally:
        os.close(fd)


def write_own(name: str | Path, data: bytes, dir_fd: int | None = None, what: str | None = None) -> None:
    """Create or replace the regular file ``name`` with ``data`` (see :func:`open_own` for errors).

    Never through a symlink: a leftover name planted as a link cannot make a writer
    overwrite a file outside the store."""
    fd, _size = open_own(name, dir_fd, what, REPLACE)
    try:
        pwrite_all(fd, [data], 0)
    finally:
        os.close(fd)
