"""Fixtures for the perf suite: images, targets and read stores, all built outside timed code.

Parametrized by the registry (``targets.targets()``) and by ``targets.GRIDS``,
so a newly registered backend is benchmarked (and gated) without editing here.
Under ``--benchmark-disable`` (the default ``addopts``) every test runs once and
checks the round trip; ``.ci/perf`` runs them for real.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbench.measure import harness

from .targets import GRIDS, Grid, Reader, targets

_TARGETS = targets()


def benchmarking(config: pytest.Config) -> bool:
    """True when pytest-benchmark really times (``--benchmark-enable`` beats the ini's disable)."""
    return not config.getoption("benchmark_disable") or bool(config.getoption("benchmark_enable"))


@pytest.fixture(scope="session", autouse=True)
def reuse_memory(request: pytest.FixtureRequest) -> None:
    """Let glibc reuse freed memory instead of returning it to the kernel, for the whole session.

    First touch of fresh pages costs ~1-2.6 s/GiB on these machines, and glibc
    serves arrays over 128 KiB straight from mmap, so each round of a reader that
    allocates its output would fault it in again: we would time the VM, not the
    storage. With the harness's setting (:func:`imgbench.measure.harness.tune_allocator`,
    the one ``imgbench compare`` and ``imgbench targets`` use) the output of one round
    lands in pages the previous round already touched, for every target alike. Only
    when timing for real.
    """
    if not benchmarking(request.config):
        return
    if not harness.tune_allocator(True)["mallopt"]:
        request.config.issue_config_time_warning(
            pytest.PytestWarning("mallopt unavailable: perf timings include page faults of fresh memory"), 2
        )


@pytest.fixture(params=list(GRIDS), ids=str)
def grid(request: pytest.FixtureRequest) -> Grid:
    """The grid at full size when timing, shrunk when only checking the round trip."""
    full = GRIDS[request.param]
    return full if benchmarking(request.config) else full.shrunk()


@functools.cache
def _make_images(grid: Grid) -> np.ndarray:
    return grid.images()


@pytest.fixture
def images(grid: Grid) -> np.ndarray:
    """The grid's images, generated once per session (generation is not what we time)."""
    return _make_images(grid)


@pytest.fixture(params=_TARGETS, ids=lambda t: t.backend)
def target(request: pytest.FixtureRequest) -> Any:
    return request.param


class ReadStores:
    """Stores for the read benchmarks: each target's store of a grid, built on first use, kept.

    A session-wide cache rather than parametrized session fixtures, so that the
    tests can run grouped by operation (reference next to the backends it
    normalizes) without stores being rebuilt each time the target changes. Only
    the stores of the selected tests are built (the gate's confirmation re-runs a few).
    """

    def __init__(self, root: Path):
        self.root = root
        self.readers: dict[tuple[str, str], Reader] = {}

    def reader(self, target: Any, grid: Grid) -> Reader:
        if (target.backend, grid.name) not in self.readers:
            images = _make_images(grid)
            path = self.root / f"{grid.name}-{target.backend}"
            target.write(path, images)
            os.sync()
            self.readers[target.backend, grid.name] = target.open(path, images, grid.random)
        return self.readers[target.backend, grid.name]

    def close(self) -> None:
        for opened in self.readers.values():
            opened.close()
        self.readers.clear()


@pytest.fixture(scope="session")
def read_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadStores]:
    stores = ReadStores(tmp_path_factory.mktemp("read-stores"))
    yield stores
    stores.close()


@pytest.fixture
def reader(read_stores: ReadStores, target: Any, grid: Grid) -> Reader:
    """The target's store of the grid, opened once, output buffers allocated (and touched) up front."""
    return read_stores.reader(target, grid)


_OPS = ("test_write", "test_read_all", "test_read_random")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the perf tests grouped by (grid, operation), the reference first in each group.

    A ratio to the reference is only as good as the two times are close in time:
    the load on a shared machine drifts over a minute. Only this directory's
    items are reordered, within the slots they already occupy.
    """
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]
    order = {t.backend: k for k, t in enumerate(_TARGETS)}
    grids = list(GRIDS)

    def key(item: pytest.Item) -> tuple:
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        t, g = params.get("target"), params.get("grid")
        op = item.originalname if hasattr(item, "originalname") else item.name
        return (
            grids.index(g) if g in grids else -1,
            _OPS.index(op) if op in _OPS else -1,
            order.get(t.backend, -1) if t is not None else -1,
        )

    mine = sorted((items[i] for i in slots), key=key)
    for i, item in zip(slots, mine):
        items[i] = item
