"""Write N images to a fresh store, durably (what ``imgbench convert`` does), per target.

Each round writes to a new path made in ``setup``, after deleting the previous
round's output and ``os.sync()``: write-back of earlier rounds (or of anything
else on the machine) would otherwise land in the timed write, and page-cache
writes here vary 10x from run to run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .targets import Grid, assert_same, describe

#: Timed rounds per write benchmark (plus one warm-up round).
ROUNDS = 9


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def test_write(
    benchmark: Any, target: Any, grid: Grid, images: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> None:
    describe(benchmark, "write", target, grid)
    root = tmp_path_factory.mktemp(f"write-{grid.name}-{target.backend}")
    written: list[Path] = []

    def fresh_target() -> tuple[tuple[Path, np.ndarray], dict]:
        while written:
            _remove(written.pop())
        os.sync()
        path = root / f"round{len(os.listdir(root))}"
        written.append(path)
        return (path, images), {}

    benchmark.pedantic(target.write, setup=fresh_target, rounds=ROUNDS, warmup_rounds=1)

    reader = target.open(written[-1], images, grid.random)
    try:
        assert_same(reader.read_all(), images)
    finally:
        reader.close()
