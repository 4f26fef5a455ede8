"""The hdf5 backend: one dataset (N, H, W[, C]) when shapes agree, else a flat buffer + offsets + shapes;
labels, digests and attrs alongside. What only hdf5 promises, and what its file gets when damaged or hostile.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing) is covered for
every backend by ``tests/contract/``; this file looks inside the HDF5 file with h5py.
"""

from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401 - registers the zstd filter for plain h5py
import numpy as np
import pytest
import xxhash

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.core.errors import CorruptStoreError
from imgbench.storage.hdf5 import _ChunkTable

from ..conftest import same, sample
from ..contract.backends import flip_bit
from ..contract.fuzzing import store_images
from ..contract.fuzzing import SHAPE_GAP_XFAIL
from . import hostile
from . import stores
from .stores import read_everything
from .hostile import assert_refused, probe

build_store = functools.partial(stores.build_store, backend="hdf5")


# ------------------------------------------------------------------ layout: plain h5py reads it
def test_hdf5_uniform_and_ragged_with_plain_h5py(tmp_path):
    batch = np.stack([sample((9, 7, 3), np.uint16, seed=i) for i in range(6)])
    path = tmp_path / "u.h5"
    with imgbench.open(path, "w", compression="zstd") as s:
        s.extend(batch, labels=[5, 4, 3, 2, 1, 0])
        s.attrs["site"] = "A"
    with h5py.File(path, "r") as f:
        meta = json.loads(f.attrs["imgbench"])
        assert meta["layout"] == "uniform" and meta["count"] == 6 and meta["compression"] == "zstd"
        assert np.array_equal(f["images"][:], batch)
        assert f["labels"][:].tolist() == [5, 4, 3, 2, 1, 0]
        assert json.loads(f["attrs"][()]) == {"site": "A"}

    images = [sample((4, 5), np.uint8), sample((3, 3, 4), np.float32), sample((2, 6, 1), np.int16)]
    path = tmp_path / "r.h5"
    with imgbench.open(path, "w", compression="gzip") as s:
        s.extend(images)
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["imgbench"])["layout"] == "ragged"
        data, offsets = f["data"][:], f["offsets"][:]
        for i, im in enumerate(images):
            dims = tuple(int(d) for d in f["shapes"][i] if d)
            dtype = np.dtype(f["dtypes"][i].decode())
            got = np.frombuffer(data[offsets[i] : offsets[i + 1]].tobytes(), dtype).reshape(dims)
            assert got.tobytes() == im.tobytes() and got.shape == im.shape


# ------------------------------------------------------------------ the pread fast path (issue 6)
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


# ------------------------------------------------------------------ damage
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_hdf5_truncated(tmp_path, compression):
    path, _ = build_store(tmp_path, compression, n=200)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)

def test_hdf5_compressed_chunk_damage(tmp_path):
    path, images = build_store(tmp_path, "zstd", n=50)
    with h5py.File(path, "r") as f:
        ds = f["images"]
        info = ds.id.get_chunk_info(1)
    offset = info.byte_offset + info.size // 2
    flip_bit(path, offset)
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)

def test_hdf5_foreign_and_inconsistent(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(imgbench.CorruptStoreError, match="without imgbench metadata"):
        imgbench.open(foreign)
    path, _ = build_store(tmp_path)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["imgbench"])
        meta["count"] = 500
        f.attrs["imgbench"] = json.dumps(meta)
    with pytest.raises(imgbench.CorruptStoreError, match="counts 500|one label per image"):
        imgbench.open(path)
    notes = tmp_path / "notes.h5"
    notes.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(notes)

def test_hdf5_ragged_index_lies(tmp_path):
    path = tmp_path / "r.h5"
    with imgbench.open(path, "w") as s:
        s.extend([sample((4, 5), np.uint8), sample((6, 3, 3), np.uint16)])
    with h5py.File(path, "r+") as f:
        f["shapes"][1] = [6, 3, 4000]  # claims far more bytes than stored
    with imgbench.open(path) as s:
        assert s[0].shape == (4, 5)
        with pytest.raises(imgbench.CorruptStoreError, match="image 1"):
            s[1]
    with h5py.File(path, "r+") as f:
        f["offsets"][1] = 10**12
    with pytest.raises(imgbench.CorruptStoreError, match="inconsistent"):
        imgbench.open(path)


@pytest.mark.parametrize("name", ["images", "data", "labels"])
def test_hdf5_object_that_is_not_a_dataset_is_corrupt(tmp_path, name):
    path = tmp_path / "t.h5"
    ims = store_images("none")
    with imgbench.open(path, "w") as s:
        s.extend(ims if name == "data" else np.stack(ims[:8]), labels=np.arange(len(ims) if name == "data" else 8))
    with h5py.File(path, "r+") as f:
        del f[name]
        f[name] = np.dtype("<i8")  # a committed datatype where a dataset was
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()
            s.labels


# ------------------------------------------------------------------ checksums: the layout
def batch(n: int, shape=(16, 12, 3), dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return np.stack([sample(shape, dtype, seed=seed + i) for i in range(n)])

def mixed(n: int, seed: int = 0) -> list[np.ndarray]:
    """Images of different shapes and dtypes (HDF5's ragged layout, zarr's ragged tail)."""
    kinds = [((7, 5), np.uint8), ((9, 4, 3), np.uint16), ((3, 3, 4), np.float32), ((6, 8, 1), np.int16)]
    return [sample(*kinds[i % len(kinds)], seed=seed + i) for i in range(n)]

def h5_build(path, images, compression, labels=True, **options):
    with imgbench.open(path, "w", backend="hdf5", compression=compression, **options) as s:
        s.extend(images, labels=np.arange(len(images)) if labels else None)
    return images

def test_hdf5_checksums_are_the_digests_and_plain_h5py_reads_them(tmp_path):
    path = tmp_path / "d.h5"
    images = h5_build(path, batch(30), "none")
    with imgbench.open(path) as s:
        sums = s.checksums
        assert sums.dtype == np.uint64 and len(sums) == 30
        assert (sums == checksum.digests(images, np.arange(30))).all()  # h5_build's labels are the seeds
    with h5py.File(path, "r") as f:
        assert '"checksum": "xxh3_64"' in f.attrs["imgbench"]
        ds = f["checksums"]
        assert ds.dtype == np.dtype("<u8") and ds.shape == (30,) and ds.fletcher32
        assert ds[5] == xxhash.xxh3_64_intdigest(images[5].tobytes(), seed=int(f["labels"][5]))
        assert f["labels"][5] == 5
    items = mixed(9)
    h5_build(path, items, "zstd")
    with imgbench.open(path, verify=True) as s:
        assert (s.checksums == checksum.digests(items, np.arange(9))).all()
        assert all(same(a, b) for a, b in zip(s.read_many(), items))

def test_hdf5_checksums_survive_appends_and_the_switch_to_ragged(tmp_path):
    path = tmp_path / "a.h5"
    first = batch(10)
    h5_build(path, first, "gzip")
    second = batch(5, seed=100)
    with imgbench.open(path, "a") as s:
        s.extend(second, labels=np.arange(5))
    third = mixed(4, seed=200)  # other shapes: the uniform file is rewritten as ragged
    with imgbench.open(path, "a") as s:
        s.extend(third, labels=np.arange(4))
    everything = list(first) + list(second) + third
    labels = list(range(10)) + list(range(5)) + list(range(4))
    with h5py.File(path, "r") as f:
        assert '"ragged"' in f.attrs["imgbench"] and f["checksums"].shape == (19,)
    with imgbench.open(path, verify=True) as s:
        assert (s.checksums == checksum.digests(everything, labels)).all()
        assert all(same(a, b) for a, b in zip(s.read_many(), everything))
        assert s.labels.tolist() == labels
    assert verify(path).ok and main(["verify", "-q", str(path)]) == 0
    # An append that never closes leaves the published store and its digests as they were.
    s = imgbench.open(path, "a")
    s.extend(batch(3, seed=300), labels=np.arange(3))
    s.flush()  # hdf5 appends copy-on-write: flush publishes
    s.extend(batch(3, seed=400), labels=np.arange(3))
    s._abort_quietly()
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 22 and len(s.checksums) == 22
        s.read_many()

def test_hdf5_missing_short_or_hollow_checksums_are_corrupt(tmp_path):
    path = tmp_path / "m.h5"
    h5_build(path, batch(20), "none")
    good = path.read_bytes()
    with h5py.File(path, "r+") as f:
        f["checksums"].resize((19,))
    with pytest.raises(imgbench.CorruptStoreError, match="one checksum per image"):
        imgbench.open(path)
    assert not verify(path).ok and main(["verify", "-q", str(path)]) == 1
    path.write_bytes(good)
    with h5py.File(path, "r+") as f:
        del f["checksums"]
    with pytest.raises(imgbench.CorruptStoreError, match="checksums"):
        imgbench.open(path)
    # Declared at the right length, but nothing stored: refused before allocating by the shape.
    path.write_bytes(good)
    with h5py.File(path, "r+") as f:
        del f["checksums"]
        f.create_dataset("checksums", shape=(20,), maxshape=(None,), dtype="<u8", chunks=(8,))
    with imgbench.open(path) as s:
        assert same(s[0], batch(20)[0])  # images still read without verify
        with pytest.raises(imgbench.CorruptStoreError, match="stores only 0 bytes"):
            s.checksums
    report = verify(path)
    assert report.problems and not report.damaged and not report.ok
    # A damaged digest is reported by Fletcher-32 as damage to the checksums, not to an image.
    path.write_bytes(good)
    with h5py.File(path, "r") as f:
        info = f["checksums"].id.get_chunk_info(0)
    flip_bit(path, info.byte_offset + 8 * 4)
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="checksums"):
        s.checksums


# ------------------------------------------------------------------ hostile stores (see hostile.py)
def test_fletcher32_matches_hdf5(tmp_path):
    """The bombs below carry a valid Fletcher-32: the checksum is no defence against a crafted chunk."""
    path = hostile.build(tmp_path, "hdf5", "gzip")
    with h5py.File(path) as f:
        _mask, chunk = f["images"].id.read_direct_chunk((0, 0, 0, 0))
    assert struct.pack("<I", hostile.fletcher32(chunk[:-4])) == chunk[-4:]

def _hdf5_bomb(tmp_path: Path, compression: str, payload: bytes) -> Path:
    path = hostile.build(tmp_path, "hdf5", compression, labels=False)
    with h5py.File(path, "r+") as f:
        ds = f["images"]
        assert ds.id.get_num_chunks() == 1
        ds.id.write_direct_chunk((0,) * ds.ndim, payload + struct.pack("<I", hostile.fletcher32(payload)), 0)
    return path

def test_hdf5_zstd_chunk_bomb_is_refused(tmp_path):
    path = _hdf5_bomb(tmp_path, "zstd", hostile.zstd_rle(256 << 20))
    assert path.stat().st_size < 200_000
    assert_refused(probe(path, "one:1"))

def test_hdf5_gzip_chunk_bomb_is_refused(tmp_path):
    path = _hdf5_bomb(tmp_path, "gzip", hostile.deflate_zeros(256 << 20))
    assert_refused(probe(path, "one:1"))

def test_hdf5_zstd_chunk_declaring_a_terabyte_is_refused(tmp_path):
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    assert_refused(probe(_hdf5_bomb(tmp_path, "zstd", frame), "one:1"))

def _h5_meta(f, **changes) -> None:
    meta = json.loads(f.attrs["imgbench"])
    meta.update(changes)
    f.attrs["imgbench"] = json.dumps(meta)

@pytest.mark.parametrize("count", [40_000, 10**12], ids=["40k", "1e12"])
def test_hdf5_count_beyond_the_stored_chunks_is_refused(tmp_path, count):
    path = hostile.build(tmp_path, "hdf5", labels=False)
    with h5py.File(path, "r+") as f:
        f["images"].resize(count, axis=0)
        for name in [k for k in f if k not in ("images", "attrs")]:
            if f[name].maxshape[0] is None:  # per-image side arrays (checksums) follow the lie
                f[name].resize(count, axis=0)
        _h5_meta(f, count=count)
    assert path.stat().st_size < 4 << 20
    assert_refused(probe(path, f"one:{count - 1}"))
    assert_refused(probe(path, "bulk"))

def test_hdf5_huge_image_shape_is_refused(tmp_path):
    path = tmp_path / "huge.h5"
    meta = {"format": "imgbench", "version": 1, "backend": "hdf5", "compression": "none", "level": None,
            "count": 3, "labels": False, "layout": "uniform", "attrs": {}}
    with h5py.File(path, "w") as f:
        f.attrs["imgbench"] = json.dumps(meta)
        f.create_dataset("images", shape=(3, 100_000, 100_000, 4), maxshape=(None, 100_000, 100_000, 4),
                         dtype="<u2", chunks=(1, 1000, 1000, 4))
        f.create_dataset("attrs", data="{}")
    assert path.stat().st_size < 1 << 20
    assert_refused(probe(path, "one:0"))

@pytest.mark.parametrize("dtype", ["<f8", ">u2", "str"])
def test_hdf5_foreign_image_dtype_is_refused(tmp_path, dtype):
    path = hostile.build(tmp_path, "hdf5", labels=False)
    with h5py.File(path, "r+") as f:
        old = f["images"]
        shape, chunks = old.shape, old.chunks
        del f["images"]
        dt = h5py.string_dtype() if dtype == "str" else dtype
        f.create_dataset("images", shape=shape, maxshape=(None, *shape[1:]), dtype=dt, chunks=chunks)
        if dtype != "str":
            f["images"][...] = hostile.images().astype(dtype)
    assert_refused(probe(path, "one:0"))

@pytest.mark.parametrize("change", ["negative offset", "offset past the data", "negative shape", "dtype <f8",
                                   "dtype |O", "shapes 2**40"])
def test_hdf5_hostile_ragged_index_is_refused(tmp_path, change):
    path = tmp_path / "r.h5"
    with imgbench.open(path, "w") as s:
        s.extend([np.zeros((4, 5), np.uint8), np.ones((6, 3, 3), np.uint16), np.full((2, 2), 7, np.uint8)])
    with h5py.File(path, "r+") as f:
        if change == "negative offset":
            f["offsets"][1] = -40
        elif change == "offset past the data":
            f["offsets"][2] = 2**62
        elif change == "negative shape":
            f["shapes"][1] = [-6, -3, 3]
        elif change == "shapes 2**40":
            f["shapes"][1] = [2**20, 2**20, 4]
        else:
            f["dtypes"][1] = change.split()[1].encode()
    res = probe(path, "all")
    assert_refused(res)

def _hdf5_pointing_outside(tmp_path: Path, how: str) -> tuple[Path, Path]:
    outside = hostile.outside_dir(tmp_path)
    path = hostile.build(tmp_path, "hdf5", labels=False)
    shape = (hostile.N, *hostile.SHAPE)
    secret_raw = outside / "secret.bin"
    secret_raw.write_bytes(bytes([42]) * int(np.prod(shape)))
    secret_h5 = outside / "secret.h5"
    with h5py.File(secret_h5, "w") as g:
        g["x"] = np.full(shape, 7, np.uint8)
    with h5py.File(path, "r+") as f:
        del f["images"]
        if how == "external storage":
            f.create_dataset("images", shape=shape, dtype=np.uint8, external=[(str(secret_raw), 0, int(np.prod(shape)))])
            target = secret_raw
        elif how == "external link":
            f["images"] = h5py.ExternalLink(str(secret_h5), "x")
            target = secret_h5
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
            layout[:] = h5py.VirtualSource(str(secret_h5), "x", shape=shape)
            f.create_virtual_dataset("images", layout)
            target = secret_h5
    return path, target

@pytest.mark.parametrize("how", ["external storage", "external link", "virtual dataset"])
def test_hdf5_datasets_that_read_other_files_are_refused(tmp_path, how):
    path, target = _hdf5_pointing_outside(tmp_path, how)
    watch = hostile.Watch(target)
    res = probe(path, "all")
    touched = watch.events()
    assert res["outcome"] == "error" and res["corrupt"], hostile.describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


# ------------------------------------------------------------------ a gap the fuzz found, pinned


@SHAPE_GAP_XFAIL
def test_shape_that_loses_its_trailing_1_is_found_with_verify(tmp_path):
    """The ragged layout's shapes row [5, 6, 1] -> [5, 6, 0] (one bit): it would read as (5, 6) with the same bytes."""
    path = tmp_path / "r.h5"
    images = [np.zeros((12, 10, 3), np.uint8), np.zeros((9, 7), np.uint16), np.arange(30, dtype=np.uint8).reshape(5, 6, 1)]
    with imgbench.open(path, "w") as s:
        s.extend(images, labels=[1, 2, 3])
    with h5py.File(path, "r+") as f:
        assert f["shapes"][2].tolist() == [5, 6, 1]
        f["shapes"][2] = [5, 6, 0]
    with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError):
        s[2]
