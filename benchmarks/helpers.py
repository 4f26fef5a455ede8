"""Shared axes, data and stores for the asv suite.

Parameter order everywhere: ``backend`` first (so the dashboard draws backends as
the series of one graph), then ``count``, ``shape`` (short strings such as
``"32x32x3"``), ``compression``.

Machine quirks handled here (see ../shared/BENCHMARKING.md), with the harness every
measurement of imgbench shares (:mod:`imgbench.measure.harness`; on commits from before
it, :mod:`benchmarks.harness_fallback`):

* First use of freshly allocated memory is slow, and glibc returns arrays over
  128 KiB to the OS on free. At import glibc is told to keep freed memory for
  reuse (``harness.tune_allocator``: ``M_MMAP_MAX=0``, ``M_TRIM_THRESHOLD=2 GiB``,
  ``M_TOP_PAD=64 MiB``, the setting of ``imgbench compare`` and ``imgbench
  targets``), so an output array allocated inside timed code, of any size, reuses
  memory that earlier calls already faulted in.
* Cold reads evict a store's files with ``harness.evict``; warm reads load them
  once per process with ``harness.warm``.
* ``BLOSC_NTHREADS=1`` unless threads are what is measured.
* Everything is written under ``$TMPDIR``: run asv with ``TMPDIR`` on the disk you
  mean to measure.
* Generated images are cached as ``.npy`` files under
  ``$TMPDIR/imgbench-asv-data`` (keyed by generator, shape, count, seed): the
  generators are append-only, so a cached file stays valid across commits.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

import imgbench
from imgbench import datasets
from imgbench.storage import registry

try:
    from imgbench.measure import harness
except ImportError:  # a commit from before imgbench.measure.harness
    from . import harness_fallback as harness

os.environ.setdefault("BLOSC_NTHREADS", "1")

#: ASV_SKIP_SLOW=1 skips the largest cases (CT 1,000 images, sweep 100,000 images).
SKIP_SLOW = os.environ.get("ASV_SKIP_SLOW", "") not in ("", "0")
#: IMGBENCH_ASV_SMOKE=1 shrinks every grid to its smallest counts (CI smoke runs;
#: never use it for results you save).
SMOKE = os.environ.get("IMGBENCH_ASV_SMOKE", "") not in ("", "0")
#: IMGBENCH_ASV_FULL=1 runs the full grid (~15 min a commit on 2 cores). Without it the suite runs
#: the fast grid below (about 5 min a commit), the one every submission records. Both modes have
#: the same parameter axes, so their results share graphs; a cell outside the fast grid shows n/a.
FULL = os.environ.get("IMGBENCH_ASV_FULL", "") not in ("", "0")


#: whether glibc took the allocator setting (see the module docstring)
MEMORY_REUSE = harness.tune_allocator(True)["mallopt"]

# --------------------------------------------------------------------------- axes

#: shape label -> (datasets generator name, shape)
SHAPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "32x32x3": ("photos", (32, 32, 3)),   # CIFAR-shaped photo-like RGB, uint8
    "512x512": ("ct_slices", (512, 512)),  # CT-like slice, uint16
}
SHAPE_NAMES = list(SHAPES)

#: image counts of the main grids (the sweep has its own)
COUNTS = [10] if SMOKE else [100, 1000, 10000]
#: image counts of the cold-read grid
COLD_COUNTS = [10] if SMOKE else [1000, 10000]
#: image counts of the CIFAR-shape sweep (bench_sweep)
SWEEP_COUNTS = [10, 20] if SMOKE else [10, 100, 1000, 10000, 100000]
#: largest count per shape in the main grids (CT 10,000 would be 5 GB per store)
MAX_COUNT = {"32x32x3": 10000, "512x512": 1000}
#: (shape, count) pairs skipped under ASV_SKIP_SLOW=1
SLOW = {("512x512", 1000)}

# The fast grid, written out (as scikit-image trims its suite): every backend at both of its
# compressions and both shapes, CIFAR counts 100 and 10,000 (100x apart), CT at 100 images.
# The full grid adds CIFAR 1,000, CT 1,000 and the larger sweeps. A codec axis (more
# compressions per backend) joins through compressions_for(); give it a fast subset here.
#: (shape, count) cells of the main grid (write, warm read, size) in the fast grid
FAST_CELLS = {("32x32x3", 100), ("32x32x3", 10000), ("512x512", 100)}
#: (shape, count) cells of the write's peak memory (bench_write.WriteMemory) in the fast grid
FAST_MEMORY_CELLS = {("32x32x3", 10000)}
#: (shape, count) cells of the cold-read grid in the fast grid
FAST_COLD_CELLS = {("32x32x3", 10000)}
#: sweep counts in the fast grid (bench_sweep), parallel-read counts (bench_parallel_read)
FAST_SWEEP_COUNTS = {10, 1000}
FAST_PARALLEL_COUNTS = {10_000}


def repeat(full: tuple, fast: tuple = (2, 5, 2.0)) -> tuple:
    """asv's ``repeat`` (min samples, max samples, max seconds): as given in the full grid, at most
    ``fast`` per cell in the fast grid (more cells would not fit in its time budget)."""
    if FULL:
        return full
    return tuple(min(a, b) for a, b in zip(full, fast))


def fast_grid(cell, allowed) -> None:
    """Raise NotImplementedError (asv: n/a) for a cell outside the fast grid, unless the full grid runs."""
    if not FULL and not SMOKE and cell not in allowed:
        raise NotImplementedError(f"{cell} is not in the fast grid (IMGBENCH_ASV_FULL=1 runs it)")

#: preferred lossless compressor to pair with each backend's default
_PREFERRED_LOSSLESS = ("zstd", "png", "gzip", "lzf")


def _available_backends() -> list[str]:
    names = []
    for name in imgbench.backends():
        try:
            registry.get(name)
        except Exception:  # a backend whose dependency is missing here: skipped
            continue
        names.append(name)
    return names


def compressions_for(backend: str) -> list[str]:
    """The backend's default compression, then one lossless compressor (zstd if it has it).

    For a backend whose default already compresses (disk: png), the second is
    ``none`` so that raw and compressed are both measured.
    """
    supported = list(registry.get(backend).compressions)
    default = supported[0]
    chosen = [default]
    others = [c for c in supported[1:] if c != "none"]
    if default != "none" or not others:
        if "none" in supported[1:]:
            chosen.append("none")
    else:
        for name in _PREFERRED_LOSSLESS:
            if name in others:
                chosen.append(name)
                break
        else:
            chosen.append(others[0])
    return chosen


BACKENDS = _available_backends()
COMPRESSION_BY_BACKEND = {b: compressions_for(b) for b in BACKENDS}
COMPRESSIONS = sorted({c for cs in COMPRESSION_BY_BACKEND.values() for c in cs})
#: axis for benchmarks that must also run against commits lacking a backend:
#: every backend name ever benchmarked; missing ones raise NotImplementedError.
BACKEND_AXIS = BACKENDS

PARAMS = [BACKEND_AXIS, COUNTS, SHAPE_NAMES, COMPRESSIONS]
PARAM_NAMES = ["backend", "count", "shape", "compression"]


def check(backend: str, count: int, shape: str, compression: str) -> None:
    """Raise NotImplementedError (asv shows n/a) for combinations not in the grid."""
    if backend not in COMPRESSION_BY_BACKEND:
        raise NotImplementedError(f"backend {backend!r} does not exist in this commit")
    if compression not in COMPRESSION_BY_BACKEND[backend]:
        raise NotImplementedError(f"{backend} is benchmarked with {COMPRESSION_BY_BACKEND[backend]}")
    if count > MAX_COUNT[shape]:
        raise NotImplementedError(f"{shape} stops at {MAX_COUNT[shape]} images")
    if SKIP_SLOW and (shape, count) in SLOW:
        raise NotImplementedError("slow case skipped (ASV_SKIP_SLOW=1)")
    fast_grid((shape, count), FAST_CELLS)


def grid():
    """Every valid (backend, count, shape, compression) of the main grid."""
    for backend in BACKENDS:
        for shape in SHAPE_NAMES:
            for count in COUNTS:
                for compression in COMPRESSION_BY_BACKEND[backend]:
                    try:
                        check(backend, count, shape, compression)
                    except NotImplementedError:
                        continue
                    yield backend, count, shape, compression


# --------------------------------------------------------------------------- data


def _data_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "imgbench-asv-data")
    os.makedirs(path, exist_ok=True)
    return path


def images(shape: str, count: int) -> np.ndarray:
    """Images ``0..count-1`` of the shape's built-in generator (seed 0), in memory.

    Cached on disk; a cached larger set is sliced (image k depends only on k).
    """
    generator, dims = SHAPES[shape]
    stem = f"{generator}-{'x'.join(map(str, dims))}-seed0"
    directory = _data_dir()
    exact = os.path.join(directory, f"{stem}-{count}.npy")
    if os.path.exists(exact):
        return np.load(exact)
    for name in sorted(os.listdir(directory)):
        if name.startswith(stem + "-") and name.endswith(".npy"):
            try:
                have = int(name[len(stem) + 1 : -4])
            except ValueError:
                continue
            if have >= count:
                return np.array(np.load(os.path.join(directory, name), mmap_mode="r")[:count])
    data = getattr(datasets, generator)(count, dims)
    tmp = f"{exact}.{os.getpid()}.tmp.npy"
    np.save(tmp, data)
    os.replace(tmp, exact)
    return data


def raw_nbytes(shape: str, count: int) -> int:
    _, dims = SHAPES[shape]
    itemsize = 1 if SHAPES[shape][0] == "photos" else 2
    return int(np.prod(dims)) * itemsize * count


def random_indices(count: int, k: int = 1000) -> np.ndarray:
    """``k`` random indices (with repeats when count < k), fixed seed."""
    return np.random.default_rng(12345).integers(0, count, k)


# --------------------------------------------------------------------------- stores


def store_name(backend: str, count: int, shape: str, compression: str) -> str:
    return f"{backend}-{count}-{shape}-{compression}"


def write(path: str, backend: str, compression: str, data: np.ndarray) -> None:
    with imgbench.open(path, "w", backend=backend, compression=compression) as store:
        store.extend(data)


def build_stores(root: str, cases) -> dict[str, str]:
    """Write one store per case under ``root``; returns name -> absolute path."""
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    paths = {}
    data_key, data = None, None
    for backend, count, shape, compression in sorted(cases, key=lambda c: (c[2], c[1])):
        if data_key != (shape, count):
            data_key, data = (shape, count), images(shape, count)
        name = store_name(backend, count, shape, compression)
        path = os.path.join(root, name)
        write(path, backend, compression, data)
        paths[name] = path
    return paths


def evict(path: str) -> None:
    """Drop a store's files from the page cache before a cold read (fsync, then POSIX_FADV_DONTNEED)."""
    harness.evict(path)


_WARM: set[str] = set()


def warm(path: str) -> None:
    """Read a store's files once per process so that the page cache holds them."""
    if path not in _WARM:
        harness.warm(path)
        _WARM.add(path)


def fresh_dir() -> str:
    """A new empty temporary directory under $TMPDIR (remove it in teardown)."""
    return tempfile.mkdtemp(prefix="imgbench-asv-")


def remove(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


class StoreGrid:
    """Base class: builds every store of the main grid once per asv run (``setup_cache``).

    Shared by the warm-read, cold-read and size benchmarks (asv keys a
    ``setup_cache`` by where it is defined, so subclasses share one). Returns
    only paths, never open handles.
    """

    params = PARAMS
    param_names = PARAM_NAMES
    timeout = 1800

    def setup_cache(self):
        return build_stores("stores", list(grid()))

    setup_cache.timeout = 1800

    def _path(self, paths, backend, count, shape, compression) -> str:
        check(backend, count, shape, compression)
        return paths[store_name(backend, count, shape, compression)]
