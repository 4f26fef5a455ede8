"""Read every image, and a fixed set of random indices, from a store built outside timed code.

The store is opened once per session (``reader`` fixture) and the page cache is
warm: this isolates the backend's read path (lookups, copies, decoding) from the
disk, whose speed on shared CI machines says nothing about our code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .targets import Grid, Reader, assert_same, describe


def test_read_all(benchmark: Any, target: Any, grid: Grid, images: np.ndarray, reader: Reader) -> None:
    describe(benchmark, "read_all", target, grid)
    got = benchmark(reader.read_all)
    assert_same(got, images)


def test_read_random(benchmark: Any, target: Any, grid: Grid, images: np.ndarray, reader: Reader) -> None:
    describe(benchmark, "read_random", target, grid)
    indices = grid.indices()
    got = benchmark(reader.read_random, indices)
    assert_same(got, images[indices])
