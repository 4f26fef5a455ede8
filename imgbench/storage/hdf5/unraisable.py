"""Errors h5py loses in ``ObjectID.__dealloc__``, caught and given back to the writer that caused them.

When HDF5 releases an object (a dataset, a dataspace, a property list) it may
write out cached data; if that write fails (the disk filled after the writer's
free-space check), h5py's ``__dealloc__`` cannot raise, and Python prints
``Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'`` with a traceback,
once per object, while the write carries on as if it had succeeded. (Cython
first prints the traceback through ``sys.excepthook``, then reports it through
``sys.unraisablehook``.) Inside :func:`capture`, such errors of this thread are
collected instead, so the writer raises the first one as its own one-line error
and discards the doomed file.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

_local = threading.local()
_installed = False
_lock = threading.Lock()


def _is_h5py_dealloc(unraisable: Any) -> bool:
    return "h5py._objects.ObjectID.__dealloc__" in f"{unraisable.err_msg} {unraisable.object!r}"


def _from_h5py_dealloc(tb: Any) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name.endswith("_dealloc") and "_objects" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        previous, previous_excepthook = sys.unraisablehook, sys.excepthook

        def excepthook(cls: type, value: BaseException, tb: Any) -> None:
            if getattr(_local, "caught", None) is None or not _from_h5py_dealloc(tb):
                previous_excepthook(cls, value, tb)

        def hook(unraisable: Any) -> None:
            caught = getattr(_local, "caught", None)
            if caught is not None and _is_h5py_dealloc(unraisable):
                caught.append(unraisable.exc_value)
            else:
                previous(unraisable)

        sys.unraisablehook, sys.excepthook = hook, excepthook
        _installed = True


@contextlib.contextmanager
def capture() -> Iterator[list[BaseException]]:
    """Collect the h5py ``__dealloc__`` errors raised in this thread meanwhile (into the yielded list)."""
    _install()
    outer = getattr(_local, "caught", None)
    _local.caught = caught = []
    try:
        yield caught
    finally:
        _local.caught = outer
        if outer is not None:
            outer.extend(caught)
