"""Measuring one target: imgbench's side and its reference, timed back to back on the same images.

Each ``*_row`` function builds a :class:`~imgbench.measure.targets_rows.Row`: an untimed
warm-up of both sides that checks what was read, then ``repeat`` interleaved pairs whose
order alternates (:func:`imgbench.measure.harness.interleaved`). The asv suite
(benchmarks/bench_targets.py) calls them one target at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.api import open as open_store
from imgbench.core import atomic
from imgbench.measure.harness import (
    RAW_RANDOM_LOOP,
    RAW_RANDOM_MANY,
    RAW_READ,
    RAW_WRITE,
    Progress,
    evict,
    interleaved,
    map_raw_npy,
    no_progress,
    prepare_write,
    read_raw_npy,
    read_raw_npy_loop,
    same_images,
    take_raw_npy,
    write_raw_npy,
)
from imgbench.measure.targets_config import TargetsError
from imgbench.measure.targets_rows import PILLOW_LOOP, THRESHOLDS, Row, gated_threshold

#: the raw bound of a read of every image, and of a loop of store[i] (their old names here)
read_raw = read_raw_npy
read_raw_loop = read_raw_npy_loop


def _pairs(
    imgbench_side: Callable[[], float], reference_side: Callable[[], float], repeat: int,
    progress: Progress, label: str,
) -> tuple[list[float], list[float]]:
    """``repeat`` samples of each side, back to back, alternating which goes first."""
    mine: list[float] = []
    ref: list[float] = []
    for r, order in interleaved(((ref, reference_side), (mine, imgbench_side)), repeat, alternate=True):
        progress(0, f"{label} ({r + 1}/{repeat})")
        for samples, side in order:
            samples.append(side())
        progress(1, "")
    return mine, ref


# ------------------------------------------------------------- the two sides
def describe_shape(images: np.ndarray) -> str:
    return f"{'x'.join(map(str, images.shape[1:]))} {images.dtype}"


def write_raw(path: Path, images: np.ndarray) -> float:
    """The raw write bound (:func:`~imgbench.measure.harness.write_raw_npy`: np.save + fsync + close); seconds."""
    t0 = time.perf_counter()
    write_raw_npy(path, images)
    return time.perf_counter() - t0


def write_store(path: Path, backend: str, compression: str, images: np.ndarray, **options: Any) -> float:
    """open('w') + extend + close (fsync and atomic publish included); returns seconds."""
    t0 = time.perf_counter()
    with open_store(path, "w", backend=backend, compression=compression, **options) as store:
        store.extend(images)
    return time.perf_counter() - t0


def read_pillow(files: Sequence[str], out: np.ndarray) -> np.ndarray:
    """The single-threaded reference for disk png: ``np.asarray(Image.open(f))`` into ``out``, file by file."""
    from PIL import Image

    shape = out.shape[1:]
    for k, f in enumerate(files):
        with Image.open(f) as im:
            out[k] = np.asarray(im).reshape(shape)
    return out


def read_loop(store: Any, indices: Sequence[int]) -> list[np.ndarray]:
    """``store[i]`` for each index, as a training loop does (works on a store or a memory-mapped array)."""
    return [store[i] for i in indices]


def build(root: Path, name: str, images: np.ndarray, kinds: Sequence[str]) -> dict[str, Path]:
    """Write the raw ``.npy`` file and the stores ``kinds`` (``hdf5``, ``lmdb``, ``disk-png``) once.

    Returns kind -> path (``"npy"`` for the raw file). Reused by every repeat.
    """
    root.mkdir(parents=True, exist_ok=True)
    paths = {"npy": root / f"{name}.npy"}
    write_raw(paths["npy"], images)
    for kind in kinds:
        backend, _, compression = kind.partition("-")
        path = root / f"{name}-{kind}"
        write_store(path, backend, compression or "none", images)
        paths[kind] = path
    return paths


def png_files(store: Path, count: int) -> list[str]:
    """The PNG files of a disk store in index order (README's documented layout: 00000000.png, ...)."""
    files = [str(store / f"{i:08d}.png") for i in range(count)]
    if not os.path.exists(files[-1]):
        raise TargetsError(f"{store} does not hold {count} PNG files named like 00000000.png")
    return files


# ------------------------------------------------------------------- targets
def _read_all_pairs(
    row: Row, images: np.ndarray, store: Path, reference: Callable[[np.ndarray], Any], reference_files: Path, *,
    cold: bool, repeat: int, step: Progress, label: str,
) -> Row:
    """imgbench open + read_many() + close against ``reference(out)``, which fills a preallocated ``out``.

    Cold: ``store`` (imgbench's side) or ``reference_files`` (the reference's) is evicted
    before each call of its side. The row's ``parts`` (when it has them) get the open /
    read_many split of every timed call.
    """
    out = np.empty_like(images)
    out.fill(0)  # touched: no page faults inside the timed read
    parts = row.parts or None

    def mine(keep: list | None = None) -> float:
        if cold:
            evict(store)
        t0 = time.perf_counter()
        with open_store(store) as s:
            t1 = time.perf_counter()
            got = s.read_many()
            t2 = time.perf_counter()
        elapsed = time.perf_counter() - t0
        if keep is not None:
            keep.append(got)
        elif parts is not None:
            parts["open_s"].append(t1 - t0)
            parts["read_many_s"].append(t2 - t1)
        return elapsed

    def ref() -> float:
        if cold:
            evict(reference_files)
        t0 = time.perf_counter()
        reference(out)
        return time.perf_counter() - t0

    step(0, f"{label}: warm-up")
    got: list = []
    mine(got)
    ref()
    row.exact = same_images(got[0], images) and same_images(out, images)
    del got
    step(1, "")
    row.imgbench_s, row.reference_s = _pairs(mine, ref, repeat, step, label)
    return row


def read_all_row(
    backend: str, images: np.ndarray, store: Path, raw: Path, *, dataset: str, repeat: int,
    cold: bool = False, progress: Progress | None = None,
) -> Row:
    """imgbench open + read_many() + close against np.load + copy, on the same images."""
    kind, threshold = THRESHOLDS[("read_all", backend)]
    row = Row(
        key=f"{backend}_read_all", operation="read_all", backend=backend, compression="none", dataset=dataset,
        shape=describe_shape(images), images=len(images), cache="cold" if cold else "warm", reference=RAW_READ,
        kind=kind, threshold=gated_threshold(threshold, dataset, cold), parts={"open_s": [], "read_many_s": []},
    )
    return _read_all_pairs(row, images, store, lambda out: read_raw_npy(raw, out), raw, cold=cold, repeat=repeat,
                           step=progress or no_progress, label=f"{dataset} {backend} read all")


def write_row(
    backend: str, images: np.ndarray, root: Path, *, dataset: str, repeat: int, progress: Progress | None = None,
) -> Row:
    """open('w') + extend + close against np.save + fsync, each into a fresh path after a sync."""
    step = progress or no_progress
    kind, threshold = THRESHOLDS[("write", backend)]
    row = Row(
        key=f"{backend}_write", operation="write", backend=backend, compression="none", dataset=dataset,
        shape=describe_shape(images), images=len(images), cache="-", reference=RAW_WRITE,
        kind=kind, threshold=gated_threshold(threshold, dataset, False),
    )
    target = root / f"{dataset}-write-{backend}"
    raw = root / f"{dataset}-write.npy"

    def mine() -> float:
        prepare_write(target)
        return write_store(target, backend, "none", images)

    def ref() -> float:
        prepare_write(raw)
        return write_raw(raw, images)

    step(0, f"{dataset} {backend} write: warm-up")
    mine()
    ref()
    with open_store(target) as s:
        row.exact = same_images(s.read_many(), images)
    row.exact = row.exact and same_images(np.load(raw), images)
    step(1, "")
    try:
        row.imgbench_s, row.reference_s = _pairs(mine, ref, repeat, step, f"{dataset} {backend} write")
    finally:
        atomic.remove(target)
        atomic.remove(raw)
    return row


def disk_png_row(
    images: np.ndarray, store: Path, *, dataset: str, repeat: int, cold: bool = False,
    progress: Progress | None = None,
) -> Row:
    """disk png open + read_many() + close against a single-threaded Pillow loop over the same files."""
    kind, threshold = THRESHOLDS[("read_all", "disk")]
    row = Row(
        key="disk_png_read_all", operation="read_all", backend="disk", compression="png", dataset=dataset,
        shape=describe_shape(images), images=len(images), cache="cold" if cold else "warm", reference=PILLOW_LOOP,
        kind=kind, threshold=gated_threshold(threshold, dataset, cold),
    )
    files = png_files(store, len(images))
    return _read_all_pairs(row, images, store, lambda out: read_pillow(files, out), store, cold=cold,
                           repeat=repeat, step=progress or no_progress, label=f"{dataset} disk png read all")


def random_rows(
    backend: str, images: np.ndarray, store: Path, raw: Path, indices: np.ndarray, *, dataset: str, repeat: int,
    cold: bool = False, progress: Progress | None = None,
) -> tuple[Row, Row]:
    """Random reads on an open store: a loop of ``store[i]`` (the target) and ``read_many(indices)``.

    ``images`` may be None (then nothing is verified) or the store's images.
    """
    step = progress or no_progress
    kind, threshold = THRESHOLDS[("random_loop", backend)]
    idx = np.asarray(indices, dtype=np.int64)
    idx_list = idx.tolist()
    like = map_raw_npy(raw)
    shape = f"{'x'.join(map(str, like.shape[1:]))} {like.dtype}"
    common = dict(
        backend=backend, compression="none", dataset=dataset, shape=shape, images=len(idx),
        cache="cold" if cold else "warm", store_images=len(like),
    )
    loop = Row(key=f"{backend}_random_loop", operation="random_loop", reference=RAW_RANDOM_LOOP, kind=kind,
               threshold=gated_threshold(threshold, dataset, cold), **common)
    many = Row(key=f"{backend}_random_many", operation="random_many", reference=RAW_RANDOM_MANY, kind="us",
               threshold=None, **common)
    out = np.zeros((len(idx), *like.shape[1:]), like.dtype)
    del like
    handles: dict[str, Any] = {"store": open_store(store), "mapped": map_raw_npy(raw)}

    def reopen_store() -> Any:
        if cold:
            handles["store"].close()
            evict(store)
            handles["store"] = open_store(store)
        return handles["store"]

    def reopen_raw() -> np.ndarray:
        if cold:
            handles["mapped"] = None
            evict(raw)
            handles["mapped"] = map_raw_npy(raw)
        return handles["mapped"]

    def on_store(read: Callable[[Any], Any]) -> Callable[[], float]:
        """imgbench's side: ``read(store)`` timed on the open store; what it read is kept for the check."""
        def side() -> float:
            s = reopen_store()
            t0 = time.perf_counter()
            got = read(s)
            elapsed = time.perf_counter() - t0
            handles["last"] = got
            return elapsed
        return side

    def on_raw(read: Callable[[np.ndarray], Any]) -> Callable[[], float]:
        """The reference's side: ``read(mapped)`` timed on the memory-mapped raw file."""
        def side() -> float:
            m = reopen_raw()
            t0 = time.perf_counter()
            read(m)
            return time.perf_counter() - t0
        return side

    mine_loop = on_store(lambda s: read_loop(s, idx_list))
    ref_loop = on_raw(lambda m: read_raw_npy_loop(m, idx_list))
    mine_many = on_store(lambda s: s.read_many(idx))
    ref_many = on_raw(lambda m: take_raw_npy(m, idx, out))

    try:
        step(0, f"{dataset} {backend} random: warm-up")
        mine_loop()
        want = images[idx] if images is not None else np.take(handles["mapped"], idx, axis=0)
        loop.exact = same_images(handles["last"], list(want))
        ref_loop()
        mine_many()
        ref_many()
        many.exact = same_images(handles["last"], want) and same_images(out, want)
        handles.pop("last", None)
        step(1, "")
        label = f"{dataset} {backend} random"
        loop.imgbench_s, loop.reference_s = _pairs(mine_loop, ref_loop, repeat, step, f"{label} s[i] loop")
        many.imgbench_s, many.reference_s = _pairs(mine_many, ref_many, repeat, step, f"{label} read_many")
    finally:
        handles.pop("last", None)
        handles["store"].close()
        handles["mapped"] = None
    return loop, many


def random_indices(store_size: int, reads: int, seed: int = 0) -> np.ndarray:
    """Distinct random indices in random order, the same in every run."""
    return np.random.default_rng(seed + 4).choice(store_size, reads, replace=False).astype(np.int64)
