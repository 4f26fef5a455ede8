"""Allocator tuning: freed memory is kept and reused, so timings measure storage, not page faults.

Why (shared/BENCHMARKING.md, "This machine's quirks"): the first touch of freshly mapped
memory costs about 1-2.6 s per GiB on these VMs, against ~20 GB/s for a copy into memory
already touched, and glibc serves every array over 128 KiB straight from ``mmap`` and unmaps
it on ``free`` -- so each call of a reader that allocates its output faults it in again, and a
timed read of a 30 MB array mostly measures the VM.

The one setting, for every harness (``imgbench compare``, ``imgbench targets``, the
parallel-read workers, the asv suite, the perf gate):

- ``M_MMAP_MAX=0``: nothing is served by ``mmap``; every allocation comes from the heap,
  whatever its size. Raising only the mmap threshold, to its 32 MiB maximum, would leave
  arrays above 32 MiB (1,000 CT slices, the 100,000-image sweep) faulting on every call.
- ``M_TRIM_THRESHOLD=2 GiB``: freed heap memory stays with the process.
- ``M_TOP_PAD=64 MiB``: the heap grows 64 MiB at a time, not by each request. Measured with
  the perf gate, random reads of CT slices from zarr took ~1.7x longer (CPU time) without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
#: (trim threshold, top pad, mmap max) while measuring, and glibc's defaults restored afterwards
TUNED = (2**31 - 1, 64 << 20, 0)
GLIBC_DEFAULTS = (128 * 1024, 128 * 1024, 65536)


def _mallopt(trim: int, top_pad: int, mmap_max: int) -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim) and libc.mallopt(_M_TOP_PAD, top_pad)
                and libc.mallopt(_M_MMAP_MAX, mmap_max))


def tune_allocator(on: bool = True) -> dict[str, Any]:
    """Ask glibc to keep freed memory for reuse (``on``), or restore its defaults.

    Returns what results documents record: ``{"mallopt": took effect, "detail": text}``.
    """
    try:
        ok = _mallopt(*(TUNED if on else GLIBC_DEFAULTS))
    except (OSError, AttributeError) as exc:
        return {"mallopt": False, "detail": f"not glibc ({exc}); freshly allocated memory may add page-fault time"}
    return {
        "mallopt": ok,
        "detail": "glibc M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB and M_TOP_PAD=64 MiB during the run: freed memory is "
                  "reused, not unmapped" if ok else "mallopt refused; freshly allocated memory may add page-fault time",
    }


@contextmanager
def allocator_tuned() -> Iterator[dict[str, Any]]:
    """:func:`tune_allocator` for the block; yields its record, then restores glibc's defaults.

    The rest of the process (a test suite, a notebook) keeps the allocator it had.
    """
    record = tune_allocator(True)
    try:
        yield record
    finally:
        if record["mallopt"]:
            tune_allocator(False)
