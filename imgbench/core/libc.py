"""The C library, loaded once, for the few Linux calls Python's ``os`` module lacks.

(``renameat2``, ``sync_file_range``, ``syncfs``, ``madvise``.) Callers fall back
to portable behaviour when it, or the function they need, is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The process's C library with ``errno`` kept for ``ctypes.get_errno``; None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def function(name: str) -> ctypes._CFuncPtr | None:
    """The C library's function ``name``, or None when the library or the function is missing."""
    lib = libc()
    return getattr(lib, name, None) if lib is not None else None
