"""Telling the kernel how a memory-mapped file is about to be read (Linux ``madvise``).

For engines that map a store's file themselves (LMDB) and do not say where: the
mapping is found by the file's identity in ``/proc/self/maps``. A scan wants large
readahead (``SEQUENTIAL``); random reads of a cold file want none (``RANDOM``).
Elsewhere than Linux nothing is advised.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from imgbench.core import libc

#: advice values of Linux <sys/mman.h>
RANDOM, SEQUENTIAL = 1, 2


def _madvise():
    """``madvise(addr, length, advice)`` from libc, or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    fn = libc.function("madvise")
    if fn is None:
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _madvise()
#: False where nothing can be advised (then :func:`advise` always returns None)
AVAILABLE = _MADVISE is not None


def mapping_of(path: Path) -> tuple[int, int] | None:
    """Start and length of this process's shared mapping of ``path``, or None when it has none."""
    try:
        st = os.stat(path)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[1].endswith("s") and int(fields[4]) == st.st_ino:
                    major, minor = (int(x, 16) for x in fields[3].split(":"))
                    if os.makedev(major, minor) == st.st_dev:
                        start, end = (int(x, 16) for x in fields[0].split("-"))
                        return start, end - start
    except (OSError, ValueError):
        pass
    return None


def advise(path: Path, advice: int) -> tuple[int, int] | None:
    """Advise the kernel about this process's mapping of ``path``; the (start, length) advised, or None."""
    if _MADVISE is None:
        return None
    found = mapping_of(path)
    if found is not None:
        _MADVISE(found[0], found[1], advice)
    return found
