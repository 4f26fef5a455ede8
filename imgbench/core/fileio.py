"""Positional reads and writes on open descriptors that finish what a single call leaves short.

``os.pread``/``os.pwrite`` may move fewer bytes than asked (a signal, a file-size
limit, a full disk, a file truncated while open). Stores use these helpers so that
a short transfer is either finished or reported, never taken for the whole.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from imgbench.core.errors import CorruptStoreError

#: buffers per ``pwritev`` call (Linux IOV_MAX)
_IOV_MAX = 1024


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


def pread_exact(fd: int, size: int, offset: int, what: str) -> bytes:
    """Exactly ``size`` bytes of ``fd`` at ``offset``; CorruptStoreError naming ``what`` if the file ends first."""
    data = read_fd(fd, size, offset)
    if len(data) < size:
        raise CorruptStoreError(
            f"{what} is truncated: {size} bytes at offset {offset} were expected, {len(data)} found"
        )
    return data


def pwrite_all(fd: int, buffers: Sequence[Any], offset: int) -> int:
    """Write ``buffers`` back to back at ``offset``, finishing short writes; return the end offset.

    A short write happens at a file-size limit or a full disk; the next call then
    raises the OSError that explains it.
    """
    pending = [memoryview(b).cast("B") for b in buffers]
    pending = [b for b in pending if len(b)]
    k = 0
    while k < len(pending):
        if hasattr(os, "pwritev"):
            n = os.pwritev(fd, pending[k : k + _IOV_MAX], offset)
        else:  # platforms without pwritev: one buffer per call
            n = os.pwrite(fd, pending[k], offset)
        if n <= 0:
            raise OSError(f"write returned {n} at offset {offset}")
        offset += n
        while n and k < len(pending):
            size = len(pending[k])
            if n >= size:
                n -= size
                k += 1
            else:
                pending[k] = pending[k][n:]
                n = 0
    return offset
