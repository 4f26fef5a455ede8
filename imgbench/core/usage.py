"""Measuring stores: bytes on disk and file counts (timing comes with the benchmarks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from imgbench.core.errors import StoreNotFoundError


def disk_usage(path: str | os.PathLike) -> dict[str, int]:
    """Bytes and files a store occupies.

    ``apparent``: sum of file sizes; ``allocated``: bytes the filesystem really
    uses (st_blocks, so sparse files and block rounding show); ``files``: regular
    files (inodes matter at millions of images). Symlinks are not followed and
    hard-linked files are counted once.
    """
    root = Path(os.fspath(path))
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        raise StoreNotFoundError(f"no file or directory at {root}") from None
    apparent = allocated = files = 0
    seen: set[tuple[int, int]] = set()

    def add(st: os.stat_result) -> None:
        nonlocal apparent, allocated, files
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        apparent += st.st_size
        allocated += st.st_blocks * 512
        files += 1

    if stat.S_ISDIR(top.st_mode):
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                add(os.lstat(os.path.join(dirpath, name)))
    else:
        add(top)
    return {"apparent": apparent, "allocated": allocated, "files": files}
