"""The page cache around timed calls: evicted before a cold read, loaded before a warm one,
flushed before a write.

No root needed: ``posix_fadvise(POSIX_FADV_DONTNEED)`` after an ``fsync`` drops a file's
pages (shared/BENCHMARKING.md). Pages that a process has mapped are not dropped: close a
store (or drop a memory map) before evicting its files.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgbench.core import atomic


def store_files(path: str | os.PathLike) -> list[Path]:
    """The file at ``path``, or every file below the directory ``path`` (a store, a raw .npy file)."""
    root = Path(os.fspath(path))
    if root.is_file():
        return [root]
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


def evict(path: str | os.PathLike) -> int:
    """Drop a store's files from the page cache (fsync, then POSIX_FADV_DONTNEED); returns files evicted."""
    done = 0
    for file in store_files(path):
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            done += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return done


def warm(path: str | os.PathLike) -> None:
    """Read every file of a store once, so that the page cache holds it before a warm read."""
    for file in store_files(path):
        with open(file, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass


def prepare_write(path: str | os.PathLike) -> None:
    """Before a timed write (untimed): remove what an earlier repeat wrote at ``path``, then ``os.sync()``.

    Page-cache writes vary 10x here with write-back of earlier runs; flushing first keeps
    that write-back out of the timed write.
    """
    atomic.remove(Path(os.fspath(path)))
    os.sync()
