"""Write N images to a fresh store, durably (what ``imgbench convert`` does), per target.

Before each round ``setup`` deletes the previous round's output and calls
``os.sync()`` (:func:`imgbench.measure.harness.prepare_write`): write-back of
earlier rounds (or of anything else on the machine) would otherwise land in the
timed write, and page-cache writes here vary 10x from run to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgbench.measure import harness

from .targets import Grid, assert_same, describe

#: Timed rounds per write benchmark (plus one warm-up round).
ROUNDS = 9


def test_write(
    benchmark: Any, target: Any, grid: Grid, images: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> None:
    describe(benchmark, "write", target, grid)
    path = tmp_path_factory.mktemp(f"write-{grid.name}-{target.backend}") / "store"

    def fresh_target() -> tuple[tuple[Path, np.ndarray], dict]:
        harness.prepare_write(path)
        return (path, images), {}

    benchmark.pedantic(target.write, setup=fresh_target, rounds=ROUNDS, warmup_rounds=1)

    reader = target.open(path, images, grid.random)
    try:
        assert_same(reader.read_all(), images)
    finally:
        reader.close()
