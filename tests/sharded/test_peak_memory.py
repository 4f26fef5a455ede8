"""Peak memory of big reads: the output plus a bounded working set, not the output twice.

Sharded ``read_many(indices)``, ``s[:]`` and ``read_many(range(n))`` used to keep
every shard's part and then copy them into the output (2.01x for a 2 GiB
sharded hdf5); plain zarr ``read_many(permutation)`` read the sorted rows whole
and then reordered them (2.16x). Measured with tracemalloc, which traces
numpy's allocations: deterministic, unlike RSS.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import imgbench

N, SHAPE = 2048, (256, 256)  # 128 MiB of uint8 pixels
LIMIT = 1.2  # peak memory of a read, as a multiple of its output


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (N, *SHAPE), dtype=np.uint8)


def _peak(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        got = fn()
        return got, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write(path, images, backend: str, **options) -> None:
    with imgbench.open(path, "w", backend=backend, compression="none", **options) as s:
        s.extend(images)


def _check(s, images, read, want) -> None:
    got, peak = _peak(lambda: read(s))
    assert isinstance(got, np.ndarray) and got.tobytes() == images[want].tobytes()
    assert peak <= LIMIT * got.nbytes, f"peak {peak / got.nbytes:.2f}x the output ({got.nbytes >> 20} MiB)"


PERMUTATION = np.random.default_rng(1).permutation(N)
READS = {
    "permutation": (lambda s: s.read_many(PERMUTATION), PERMUTATION),
    "slice": (lambda s: s[:], np.arange(N)),
    "range": (lambda s: s.read_many(range(N)), np.arange(N)),
    "repeats": (lambda s: s.read_many(np.concatenate([PERMUTATION[: N // 2]] * 2)),
                np.concatenate([PERMUTATION[: N // 2]] * 2)),
}


@pytest.mark.parametrize("backend", ["hdf5", "zarr", "tar"])
def test_sharded_reads_write_each_part_into_the_output(tmp_path, images, backend):
    path = tmp_path / "ds"
    _write(path, images, backend, images_per_shard=64)
    with imgbench.open(path) as s:
        assert s.shards == N // 64
        for read, want in READS.values():
            _check(s, images, read, want)


def test_plain_zarr_out_of_order_reads_scatter_into_the_output(tmp_path, images):
    path = tmp_path / "x.zarr"
    _write(path, images, "zarr")
    with imgbench.open(path) as s:
        for name in ("permutation", "repeats"):
            read, want = READS[name]
            _check(s, images, read, want)
