"""The few harness calls the suite makes, for commits from before :mod:`imgbench.measure.harness`.

asv runs this suite against old commits too; there the import of the harness fails and
:mod:`benchmarks.helpers` takes these instead: the same allocator setting and page-cache
calls (see imgbench/measure/harness/allocator.py and page_cache.py for why), nothing more.
"""

import ctypes
import ctypes.util
import os


def tune_allocator(on=True):
    """glibc M_TRIM_THRESHOLD (-1) 2 GiB, M_TOP_PAD (-2) 64 MiB, M_MMAP_MAX (-4) 0; the suite never restores."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return {"mallopt": all(libc.mallopt(k, v) for k, v in ((-1, 2**31 - 1), (-2, 64 << 20), (-4, 0)))}
    except (OSError, AttributeError):  # not glibc
        return {"mallopt": False}


def store_files(path):
    if os.path.isfile(path):
        return [path]
    return [os.path.join(d, n) for d, _, names in os.walk(path) for n in names]


def evict(path):
    for name in store_files(path):
        with open(name, "rb") as f:
            os.fsync(f.fileno())
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def warm(path):
    for name in store_files(path):
        with open(name, "rb") as f:
            while f.read(1 << 20):
                pass
