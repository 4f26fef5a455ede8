"""A shared thread pool for codec work (PNG and zstd release the GIL).

Threads, not processes: decoded arrays stay in this process with no copying,
and the codecs do their work outside the GIL. The pool is created on first use
and recreated in a forked child, whose copy of the parent's threads is dead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np

from imgbench.core.errors import CorruptStoreError

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _reset_after_fork() -> None:
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_reset_after_fork)


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imgbench")
        _pool_size = threads
    return _pool


def map_chunks(fn: Callable[[int, int], Any], n: int, threads: int | None = None, chunk: int = 32) -> list[Any]:
    """Call ``fn(start, stop)`` over ``range(n)`` cut into chunks, on up to ``threads`` threads.

    Returns the results in chunk order. Exceptions propagate from the first
    failing chunk. Small jobs run inline: a thread hop costs more than a 32x32 PNG.
    """
    threads = default_threads() if threads is None else max(1, int(threads))
    if threads > 1:
        # Few, large items (CT slices): cut finer so every thread gets work.
        chunk = max(1, min(chunk, -(-n // (4 * threads))))
    bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    if threads == 1 or len(bounds) <= 1:
        return [fn(s, e) for s, e in bounds]
    futures = []
    try:
        pool = _executor(threads)
        for s, e in bounds:
            futures.append(pool.submit(fn, s, e))
        # Wait for every chunk before raising: a caller cleaning up after an error
        # (removing a temporary store) must not race chunks still writing into it.
        wait(futures)
    except BaseException:
        # Interrupted here (Ctrl-C arrives in the main thread, which is waiting): chunks not
        # started are dropped and running ones finish before the exception reaches the caller,
        # whose clean-up (removing a temporary store) would otherwise race their writes.
        _settle(futures)
        raise
    return [f.result() for f in futures]


def _settle(futures: list[Any]) -> None:
    """Cancel the futures not started and wait for the running ones, through further interrupts."""
    for f in futures:
        f.cancel()
    while True:
        try:
            wait(futures)
            return
        except BaseException:  # a second Ctrl-C: still wait, the first exception is re-raised
            continue


def map_items(fn: Callable[[T], Any], items: Sequence[T], threads: int | None = None, chunk: int = 32) -> list[Any]:
    """``[fn(x) for x in items]`` computed in chunks on the shared pool."""
    parts = map_chunks(lambda s, e: [fn(x) for x in items[s:e]], len(items), threads, chunk)
    return [y for part in parts for y in part]


def decode_stacked(
    decode: Callable[[int], np.ndarray], n: int, threads: int | None = None, where: str = ""
) -> np.ndarray:
    """``np.stack([decode(i) for i in range(n)])`` without the list, decoded on the shared pool.

    The output is allocated only after ``decode(0)`` succeeds, from its shape and
    dtype, so metadata that lies about shapes is caught by the decoder's checks,
    not by a huge allocation; every other image must match image 0.
    """
    first = decode(0)
    out = np.empty((n, *first.shape), dtype=first.dtype)
    out[0] = first

    def fill(start: int, stop: int) -> None:
        for i in range(max(start, 1), stop):
            image = decode(i)
            if image.shape != first.shape or image.dtype != first.dtype:
                raise CorruptStoreError(
                    f"{where}image {i} of this read is {image.shape} {image.dtype}, but the store records "
                    f"{first.shape} {first.dtype} for every image"
                )
            out[i] = image

    map_chunks(fill, n, threads)
    return out
