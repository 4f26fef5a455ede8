"""What the perf suite measures: the image grid and the write/read targets.

Every registered backend is a target, at its default compression (the first it
lists), plus the raw ``.npy`` reference of :mod:`imgbench.measure.harness` (the
one ``imgbench targets`` uses): ``np.save`` + fsync to write (the backends fsync
before publishing a store, so the reference does too) and ``np.load`` + copy into
a preallocated array to read all; random reads gather rows of the memory-mapped
``.npy`` into a preallocated array. The gate divides
each backend's time by the reference time of the same operation and images in
the same run, which cancels out how fast (or busy) the machine is today.

Sizes are small so the whole suite runs in about a minute, yet big enough that
the fastest target still takes about a millisecond (timer and scheduler noise
stay small). The allocator reuses memory between rounds (see conftest.reuse_memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import imgbench
from imgbench import datasets
from imgbench.measure import harness
from imgbench.storage import registry

#: Name the reference target carries in benchmark JSON (``extra_info["backend"]``).
REFERENCE = "raw"


@dataclass(frozen=True)
class Grid:
    """One image set: ``count`` images from ``make``, and ``random`` indices for random reads."""

    name: str
    make: Callable[[int], np.ndarray]
    count: int
    random: int
    #: image count when only checking the round trip (``--benchmark-disable``): keeps ``pytest`` fast
    smoke: int

    def shrunk(self) -> Grid:
        return replace(self, count=self.smoke, random=min(self.random, self.smoke // 2))

    def images(self) -> np.ndarray:
        return self.make(self.count)

    def indices(self) -> np.ndarray:
        """Fixed random indices (without repeats, in random order), the same in every run."""
        return np.random.default_rng(4).choice(self.count, self.random, replace=False).astype(np.int64)


#: CIFAR-shaped photos (6 MB) and CT-shaped slices (16 MB).
GRIDS: dict[str, Grid] = {
    "cifar": Grid("cifar", lambda n: datasets.photos(n, shape=(32, 32, 3)), count=2000, random=400, smoke=300),
    "ct": Grid("ct", lambda n: datasets.ct_slices(n, shape=(512, 512)), count=32, random=16, smoke=4),
}


class Reader(Protocol):
    def read_all(self) -> np.ndarray: ...

    def read_random(self, indices: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class Target(Protocol):
    """A way of storing images: a backend, or the raw reference."""

    backend: str
    compression: str | None

    def write(self, path: Path, images: np.ndarray) -> None: ...

    def open(self, path: Path, like: np.ndarray, random: int) -> Reader: ...


@dataclass(frozen=True)
class BackendTarget:
    """An imgbench backend at its default compression, through the public API only.

    Backends with a codec thread pool (a ``threads`` option) run it with one
    thread, like the single-threaded reference: on 2 shared cores, whether a
    second core happens to be free decides a 2x swing of a threaded benchmark,
    which would drown the regressions we gate on. Parallel speed-up is measured
    by ``imgbench compare`` and the asv suite, not here.
    """

    backend: str
    compression: str
    options: tuple[tuple[str, Any], ...] = ()

    def write(self, path: Path, images: np.ndarray) -> None:
        with imgbench.open(
            path, "w", backend=self.backend, compression=self.compression, **dict(self.options)
        ) as store:
            store.extend(images)

    def open(self, path: Path, like: np.ndarray, random: int) -> Reader:
        return StoreReader(imgbench.open(path, **dict(self.options)))


class StoreReader:
    def __init__(self, store: imgbench.Store):
        self.store = store

    def read_all(self) -> np.ndarray:
        return self.store.read_many()

    def read_random(self, indices: np.ndarray) -> np.ndarray:
        return self.store.read_many(indices)

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class NpyTarget:
    """The near-physical bound: one raw ``.npy`` file."""

    backend: str = REFERENCE
    compression: str | None = None

    def write(self, path: Path, images: np.ndarray) -> None:
        harness.write_raw_npy(path, images)

    def open(self, path: Path, like: np.ndarray, random: int) -> Reader:
        return NpyReader(path, like, random)


class NpyReader:
    """Holds its output arrays, allocated and touched once, outside timed code."""

    def __init__(self, path: Path, like: np.ndarray, random: int):
        self.path = path
        self.out = np.zeros_like(like)
        self.out_random = np.zeros((random, *like.shape[1:]), like.dtype)
        self.mapped = harness.map_raw_npy(path)

    def read_all(self) -> np.ndarray:
        return harness.read_raw_npy(self.path, self.out)

    def read_random(self, indices: np.ndarray) -> np.ndarray:
        return harness.take_raw_npy(self.mapped, indices, self.out_random)

    def close(self) -> None:
        self.mapped = None


def targets() -> list[Any]:
    """The reference, then every registered backend (never a hard-coded list) at its default compression.

    ``threads=1`` where a backend takes it (see :class:`BackendTarget`).
    """
    found: list[Any] = [NpyTarget()]
    for name in imgbench.backends():
        cls = registry.get(name)
        options = (("threads", 1),) if "threads" in cls.option_defaults else ()
        found.append(BackendTarget(name, cls.compressions[0], options))
    return found


def describe(benchmark: Any, op: str, target: Any, grid: Grid) -> None:
    """Label a benchmark for the gate (``gate.py`` keys on these fields, not on test names)."""
    benchmark.group = f"{op} {grid.name}"
    benchmark.extra_info.update(
        op=op,
        dataset=grid.name,
        backend=target.backend,
        compression=target.compression,
        reference=target.backend == REFERENCE,
        images=grid.count if op != "read_random" else grid.random,
    )


def assert_same(got: Any, want: np.ndarray) -> None:
    """Exact round trip: one stacked array with the same dtype, shape and values (the harness's check)."""
    problem = harness.mismatch(got, want)
    assert problem is None, problem
