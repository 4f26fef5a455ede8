"""The raw ``.npy`` reference: the near-physical bound that targets and the perf gate are ratios to.

One file holding every image as one array (docs/design.md): written with ``np.save`` and an
fsync of the file (stores fsync before they publish, so the bound does too), read with
``np.load`` and a copy into an array the caller allocated and touched before timing (no page
faults of fresh memory in the bound), read at random from its memory map. Each ``RAW_*``
text says what a figure's reference did, in results documents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

RAW_READ = "raw .npy: np.load + copy into a preallocated array"
RAW_WRITE = "raw .npy: np.save + fsync(file) + close"
RAW_RANDOM_LOOP = "raw .npy memory-mapped: mapped[i].copy() per index"
RAW_RANDOM_MANY = "raw .npy memory-mapped: np.take(mapped, indices, out=preallocated)"


def write_raw_npy(path: str | os.PathLike, images: np.ndarray) -> None:
    """The raw write: ``np.save`` + fsync + close."""
    with open(path, "wb") as f:
        np.save(f, images, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def read_raw_npy(path: str | os.PathLike, out: np.ndarray) -> np.ndarray:
    """The raw read of every image: ``np.load`` + copy into ``out`` (allocated and touched by the caller)."""
    out[...] = np.load(path, allow_pickle=False)
    return out


def map_raw_npy(path: str | os.PathLike) -> np.ndarray:
    """The raw file memory-mapped read-only: what random reads of the reference index."""
    return np.load(path, mmap_mode="r")


def take_raw_npy(mapped: np.ndarray, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The raw bound of a batched random read: rows ``indices`` of the mapped file gathered into ``out``."""
    np.take(mapped, indices, axis=0, out=out)
    return out


def read_raw_npy_loop(mapped: np.ndarray, indices: Sequence[int]) -> list[np.ndarray]:
    """The raw bound of a ``store[i]`` loop: a copy of each row of the mapped file."""
    return [mapped[i].copy() for i in indices]
