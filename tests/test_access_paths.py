"""The fast read paths (issue 6) return exactly what the plain paths do, and fail loudly.

HDF5 reads uncompressed images by ``pread`` at offsets from its chunk table;
LMDB tells the kernel how its map is about to be read. Speed is shown by the
benchmarks; these tests pin down correctness and the failure modes.
"""

from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import pytest

import imgbench
from imgbench.core.errors import CorruptStoreError, UnsupportedError
from imgbench.storage.hdf5 import _ChunkTable

from .conftest import sample


def _images(n: int = 700) -> np.ndarray:
    return np.stack([sample((8, 9, 3), np.uint16, seed=i) for i in range(n)])


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_hdf5_random_reads_match_in_any_order(tmp_path, compression):
    images = _images()
    path = tmp_path / "s.h5"
    with imgbench.open(path, "w", compression=compression, chunks=64) as s:
        s.extend(images)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.integers(0, len(images), 300), [699, 0, 699, 5, -1, -700]])
    with imgbench.open(path) as s:
        got = s.read_many(idx)
        assert got.dtype == images.dtype and np.array_equal(got, images[idx])
        for i in idx[:50].tolist():
            one = s[i]
            assert one.flags.owndata and np.array_equal(one, images[i])
        if compression == "none":
            assert isinstance(s._table(), _ChunkTable)  # the pread path is the one measured


def test_hdf5_file_truncated_under_a_reader_is_an_error(tmp_path):
    images = _images()
    path = tmp_path / "s.h5"
    with imgbench.open(path, "w", chunks=64) as s:
        s.extend(images)
    with imgbench.open(path) as s:
        assert np.array_equal(s[3], images[3])
        os.truncate(path, os.path.getsize(path) // 3)
        with pytest.raises(CorruptStoreError):
            s[len(images) - 1]
        with pytest.raises(CorruptStoreError):
            s.read_many([len(images) - 1, 0])


def test_hdf5_chunk_table_refuses_files_it_does_not_understand(tmp_path):
    """A dataset imgbench would not write (filtered, big-endian) is read through HDF5 instead."""
    images = _images(100)
    for kw in ({"compression": "gzip"}, {"dtype": ">u2"}):
        path = tmp_path / f"plain-{len(kw)}-{list(kw)[0]}.h5"
        with h5py.File(path, "w") as f:
            ds = f.create_dataset("images", data=images, chunks=(10, 8, 9, 3), maxshape=(None, 8, 9, 3), **kw)
            assert _ChunkTable.build(ds, len(images)) is None
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        ds = f.create_dataset("images", data=images, chunks=(10, 8, 9, 3), maxshape=(None, 8, 9, 3))
        assert _ChunkTable.build(ds, len(images)) is not None
        assert _ChunkTable.build(ds, len(images) + 1) is None  # count disagrees with the dataset


def _map_flags(name: str) -> list[str] | None:
    """VmFlags of this process's mapping of a file named ``name``."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if len(fields) >= 6 and "-" in fields[0] and not line.startswith("VmFlags"):
                inside = fields[-1].endswith(name)
            elif inside and line.startswith("VmFlags"):
                return fields[1:]
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise flags are read from /proc/self/smaps")
def test_lmdb_readahead_auto_follows_the_access_pattern(tmp_path):
    images = _images(200)
    path = tmp_path / "s.lmdb"
    with imgbench.open(path, "w") as s:
        s.extend(images)
    with imgbench.open(path) as s:
        assert np.array_equal(s[7], images[7])
        assert "rr" in _map_flags("data.mdb")  # random: MADV_RANDOM
        assert np.array_equal(s.read_many(), images)
        assert "sr" in _map_flags("data.mdb")  # scan: MADV_SEQUENTIAL
        assert np.array_equal(s.read_many([3, 1]), images[[3, 1]])
        assert "rr" in _map_flags("data.mdb")
        assert np.array_equal(s.read_many(range(50, 120)), images[50:120])
        assert "sr" in _map_flags("data.mdb")  # a run of consecutive indices is a scan (sharded workers, slices)
        assert np.array_equal(s[10:12], images[10:12]) and "sr" in _map_flags("data.mdb")
        assert np.array_equal(s.read_many([5, 9]), images[[5, 9]]) and "rr" in _map_flags("data.mdb")
    with imgbench.open(path, readahead=True) as s:
        s.read_many([3, 1])
        s.read_many()
        flags = _map_flags("data.mdb")
        assert "rr" not in flags and "sr" not in flags  # explicit choice: left alone


def test_lmdb_readahead_option_is_checked(tmp_path):
    path = tmp_path / "s.lmdb"
    with imgbench.open(path, "w") as s:
        s.append(_images(1)[0])
    with pytest.raises(UnsupportedError, match="readahead"):
        imgbench.open(path, readahead="sometimes")


def test_lmdb_large_first_write_fits_a_small_initial_map(tmp_path):
    """The map is grown before the write; the store holds every image exactly."""
    images = np.stack([sample((64, 64, 3), np.uint8, seed=i) for i in range(2000)])  # ~24 MiB
    path = tmp_path / "s.lmdb"
    with imgbench.open(path, "w", map_size=1 << 20) as s:
        s.extend(images)
    with imgbench.open(path) as s:
        assert np.array_equal(s.read_many(), images)


def test_commit_records_are_as_readable_as_other_files(tmp_path):
    """A record written through a private temp file still gets the usual permissions (umask)."""
    from imgbench.core import atomic

    old = os.umask(0o022)
    try:
        atomic.write_file(tmp_path / "record.json", b"{}")
        assert os.stat(tmp_path / "record.json").st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic.write_file(tmp_path / "private.json", b"{}")
        assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_few_large_items_are_spread_over_threads():
    """16 CT slices must not land in one 32-item chunk on one thread."""
    import threading
    import time

    from imgbench.core import parallel

    seen: set[int] = set()
    parallel.map_items(lambda x: (seen.add(threading.get_ident()), time.sleep(0.01)), list(range(16)), threads=2)
    assert len(seen) == 2
