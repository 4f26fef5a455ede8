"""Per-image checksums on the hdf5 and zarr backends: stored with the images, found damage named.

Every compression of both backends gets one bit flipped inside ONE image's
stored bytes, located from the documented layout (the chunk's byte offset in
the HDF5 file; the shard index of the zarr shard), and must then be reported
as exactly that image by ``open(verify=True)``, ``integrity.verify`` and
``imgbench verify``.
"""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import xxhash
import zarr

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.storage.hdf5 import HDF5Store
from imgbench.storage.zarr import ZarrStore

from .conftest import same, sample

HDF5_COMPRESSIONS = list(HDF5Store.compressions)
ZARR_COMPRESSIONS = list(ZarrStore.compressions)
#: > 16 KiB, so a compressed HDF5 chunk holds exactly one image
BIG = (64, 96, 3)
DAMAGED = 3


def batch(n: int, shape=(16, 12, 3), dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return np.stack([sample(shape, dtype, seed=seed + i) for i in range(n)])


def mixed(n: int, seed: int = 0) -> list[np.ndarray]:
    """Images of different shapes and dtypes (HDF5's ragged layout, zarr's ragged tail)."""
    kinds = [((7, 5), np.uint8), ((9, 4, 3), np.uint16), ((3, 3, 4), np.float32), ((6, 8, 1), np.int16)]
    return [sample(*kinds[i % len(kinds)], seed=seed + i) for i in range(n)]


def flip_bit(path, offset: int, mask: int = 0x10) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


def assert_only_damaged(path, bad: list[int], n: int, images, capsys=None, format_detects: bool = False) -> None:
    """(a) verify=True names each bad image, the others read whole; (b) verify() and the CLI report exactly them."""
    bad_set = set(bad)
    with imgbench.open(path, verify=True) as s:
        assert len(s) == n
        for i in range(n):
            if i in bad_set:
                with pytest.raises(imgbench.CorruptStoreError, match=rf"image {i}\b"):
                    s[i]
            else:
                assert same(s[i], images[i]), i
        good = [i for i in range(n) if i not in bad_set]
        got = s.read_many(good)
        assert all(same(got[j], images[i]) for j, i in enumerate(good))
        # a batched read names the image when the checksum finds it (or, in HDF5, the chunk's filter does)
        name = rf"image {bad[0]}\b" if not format_detects or ".h5" in str(path) else None
        with pytest.raises(imgbench.CorruptStoreError, match=name):
            s.read_many([good[0], bad[0]])
        with pytest.raises(imgbench.CorruptStoreError):
            s.read_many()
    report = verify(path)
    assert report.checksummed and not report.problems, report.problems
    assert sorted(report.damaged) == sorted(bad_set) and not report.ok
    assert main(["verify", "-q", str(path)]) == 1
    if capsys is not None:
        out = capsys.readouterr().out
        assert f"damaged image {bad[0]}" in out
    if format_detects:
        with imgbench.open(path) as s:  # verify=False: the format's own checks still refuse
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {bad[0]}\b"):
                s[bad[0]]


# ======================================================================= HDF5
def h5_build(path, images, compression, labels=True, **options):
    with imgbench.open(path, "w", backend="hdf5", compression=compression, **options) as s:
        s.extend(images, labels=np.arange(len(images)) if labels else None)
    return images


def h5_image_offset(path, index: int) -> int:
    """File offset of a byte in the middle of image ``index``'s stored (possibly compressed) bytes."""
    with h5py.File(path, "r") as f:
        meta = f.attrs["imgbench"]
        if '"uniform"' in meta:
            ds = f["images"]
            per = ds.chunks[0]
            info = ds.id.get_chunk_info_by_coord((index // per * per,) + (0,) * (ds.ndim - 1))
            if ds.compression is None:
                nbytes = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
                return info.byte_offset + (index % per) * nbytes + nbytes // 2
            assert per == 1, "one image per compressed chunk, so the flip damages one image"
            return info.byte_offset + (info.size - 4) // 2  # inside the payload, not the Fletcher-32
        offsets, ds = f["offsets"][:], f["data"]
        middle = int(offsets[index] + offsets[index + 1]) // 2
        chunk = ds.chunks[0]
        info = ds.id.get_chunk_info_by_coord((middle // chunk * chunk,))
        if ds.compression is None:
            return info.byte_offset + middle % chunk
        return info.byte_offset + (info.size - 4) // 2


@pytest.mark.parametrize("compression", HDF5_COMPRESSIONS)
def test_hdf5_bit_flip_in_one_image_is_named(tmp_path, compression, capsys):
    path = tmp_path / f"u-{compression}.h5"
    n = 8
    images = h5_build(path, batch(n, BIG), compression)
    flip_bit(path, h5_image_offset(path, DAMAGED))
    assert_only_damaged(path, [DAMAGED], n, images, capsys, format_detects=compression != "none")
    if compression == "none":
        # (c) raw data has no check of its own: without verify the damage reads back as pixels.
        with imgbench.open(path) as s:
            got = s[DAMAGED]
            assert got.shape == images[DAMAGED].shape and not same(got, images[DAMAGED])
            assert np.count_nonzero(got != images[DAMAGED]) == 1
            assert same(s.read_many()[DAMAGED], got)


@pytest.mark.parametrize("compression", HDF5_COMPRESSIONS)
def test_hdf5_bit_flip_in_the_ragged_layout(tmp_path, compression):
    path = tmp_path / f"r-{compression}.h5"
    images = mixed(12)
    h5_build(path, images, compression)
    offset = h5_image_offset(path, DAMAGED)
    flip_bit(path, offset)
    if compression == "none":
        assert_only_damaged(path, [DAMAGED], len(images), images)
        with imgbench.open(path) as s:  # (c)
            assert not same(s[DAMAGED], images[DAMAGED]) and s[DAMAGED].shape == images[DAMAGED].shape
        return
    # A compressed 64 KiB chunk of 'data' holds all of these small images: every one is reported.
    report = verify(path)
    assert sorted(report.damaged) == list(range(len(images)))
    assert main(["verify", "-q", str(path)]) == 1


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


# ======================================================================= zarr
def zarr_build(path, images, compression, labels=True, **options):
    with imgbench.open(path, "w", backend="zarr", compression=compression, **options) as s:
        s.extend(images, labels=np.arange(len(images)) if labels else None)
    return images


def zarr_chunk_location(path, name: str, chunk: int) -> tuple[str, int, int]:
    """(shard file, byte offset, stored bytes) of inner chunk ``chunk`` of array ``name``, from the shard index."""
    arr = zarr.open_array(str(path / name), mode="r")
    per_chunk, per_shard = int(arr.chunks[0]), int(arr.shards[0])
    chunks_per_shard = per_shard // per_chunk
    shard, within = divmod(chunk * per_chunk, per_shard)
    key = arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))
    shard_path = path / name / key
    raw = shard_path.read_bytes()
    index = np.frombuffer(raw[len(raw) - 16 * chunks_per_shard - 4 : -4], "<u8").reshape(-1, 2)
    offset, nbytes = index[within // per_chunk]
    assert offset != 2**64 - 1, "chunk not written"
    return shard_path, int(offset), int(nbytes)


@pytest.mark.parametrize("compression", ZARR_COMPRESSIONS)
def test_zarr_bit_flip_in_one_image_is_named(tmp_path, compression, capsys):
    path = tmp_path / f"u-{compression}.zarr"
    n = 12
    images = zarr_build(path, batch(n), compression, chunk_images=1)  # one image per inner chunk
    shard, offset, nbytes = zarr_chunk_location(path, "images", DAMAGED)
    if compression == "none":
        assert nbytes == images[0].nbytes + 4  # the raw pixels, then their CRC-32C
    flip_bit(shard, offset + (nbytes - 4) // 2)
    # (c) every zarr chunk carries a CRC-32C: even without verify this is an error, never pixels.
    assert_only_damaged(path, [DAMAGED], n, images, capsys, format_detects=True)


@pytest.mark.parametrize("compression", ZARR_COMPRESSIONS)
def test_zarr_flip_in_a_shared_chunk_reports_each_image_it_held(tmp_path, compression):
    path = tmp_path / f"s-{compression}.zarr"
    images = zarr_build(path, batch(600), compression)  # default grid: many images per inner chunk
    per = int(zarr.open_array(str(path / "images"), mode="r").chunks[0])
    assert 1 < per < 300
    shard, offset, nbytes = zarr_chunk_location(path, "images", 1)
    flip_bit(shard, offset + (nbytes - 4) // 2)
    held = list(range(per, 2 * per))
    report = verify(path)
    assert sorted(report.damaged) == held
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {held[-1]}\b"):
            s[held[-1]]
        assert same(s[per - 1], images[per - 1]) and same(s[2 * per], images[2 * per])


@pytest.mark.parametrize("compression", ZARR_COMPRESSIONS)
def test_zarr_bit_flip_in_the_ragged_tail(tmp_path, compression):
    path = tmp_path / f"r-{compression}.zarr"
    images = mixed(12)
    zarr_build(path, images, compression)
    # image 0 is the uniform run; 1.. are ragged, all in one 128 KiB chunk of 'data'
    with imgbench.open(path) as s:
        assert s._ucount == 1
    shard, offset, nbytes = zarr_chunk_location(path, "data", 0)
    flip_bit(shard, offset + (nbytes - 4) // 2)
    report = verify(path)
    assert sorted(report.damaged) == list(range(1, 12))
    with imgbench.open(path, verify=True) as s:
        assert same(s[0], images[0])
        with pytest.raises(imgbench.CorruptStoreError, match=r"image 5\b"):
            s[5]


def test_zarr_checksums_are_the_digests_and_plain_zarr_reads_them(tmp_path):
    path = tmp_path / "d.zarr"
    images = zarr_build(path, batch(30), "zstd")
    with imgbench.open(path) as s:
        sums = s.checksums
        assert sums.dtype == np.uint64 and (sums == checksum.digests(images, np.arange(30))).all()
    g = zarr.open_group(str(path), mode="r")
    meta = g.attrs["imgbench"]
    assert meta["checksum"] == "xxh3_64"
    stored = g["checksums"][: meta["count"]]
    labels = g["labels"][: meta["count"]]
    assert labels[7] == 7
    assert stored.dtype == np.dtype("<u8")
    assert stored[7] == xxhash.xxh3_64_intdigest(images[7].tobytes(), seed=int(labels[7]))
    items = mixed(10)
    zarr_build(path, items, "blosc")
    with imgbench.open(path, verify=True) as s:
        assert (s.checksums == checksum.digests(items, np.arange(10))).all()
        assert all(same(a, b) for a, b in zip(s.read_many(), items))


def test_zarr_checksums_survive_appends_and_uncommitted_ones_are_ignored(tmp_path):
    path = tmp_path / "a.zarr"
    first = batch(10)
    zarr_build(path, first, "none", shard_images=8, chunk_images=4)
    second = batch(7, seed=100)
    with imgbench.open(path, "a") as s:
        s.extend(second, labels=np.arange(7))
        s.flush()
        s.extend(np.zeros((5, 16, 12, 3), np.uint8), labels=np.zeros(5, np.int64))
        s._abort_quietly()  # a crash after writing these and their digests, before the commit record
    assert zarr.open_array(str(path / "checksums"), mode="r").shape[0] == 22  # written beyond count
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 17 and len(s.checksums) == 17
        assert all(same(a, b) for a, b in zip(s.read_many(), list(first) + list(second)))
    third = mixed(5, seed=200)
    with imgbench.open(path, "a") as s:  # overwrites the uncommitted rows
        s.extend(third, labels=np.arange(5))
    everything = list(first) + list(second) + third
    labels = list(range(10)) + list(range(7)) + list(range(5))
    with imgbench.open(path, verify=True) as s:
        assert (s.checksums == checksum.digests(everything, labels)).all()
        assert all(same(a, b) for a, b in zip(s.read_many(), everything))
        assert s.labels.tolist() == labels
    assert verify(path).ok and main(["verify", "-q", str(path)]) == 0


def test_zarr_missing_or_short_checksums_are_corrupt(tmp_path):
    import shutil

    path = tmp_path / "m.zarr"
    zarr_build(path, batch(20), "none")
    backup = tmp_path / "backup.zarr"
    shutil.copytree(path, backup)
    zarr.open_array(str(path / "checksums"), mode="r+").resize((19,))
    with pytest.raises(imgbench.CorruptStoreError, match="'checksums' holds 19"):
        imgbench.open(path)
    assert not verify(path).ok and main(["verify", "-q", str(path)]) == 1
    shutil.rmtree(path / "checksums")
    with pytest.raises(imgbench.CorruptStoreError, match="'checksums' is missing"):
        imgbench.open(path)
    # Metadata present, shard gone: the store opens and reads, s.checksums fails.
    shutil.rmtree(path)
    shutil.copytree(backup, path)
    for shard in (path / "checksums").glob("c.*"):
        shard.unlink()
    with imgbench.open(path) as s:
        assert same(s[0], batch(20)[0])
        with pytest.raises(imgbench.CorruptStoreError, match="missing"):
            s.checksums
    report = verify(path)
    assert report.problems and not report.damaged


# ======================================================================= both
BOTH = [("hdf5", ".h5", "none"), ("hdf5", ".h5", "zstd"), ("zarr", ".zarr", "none"), ("zarr", ".zarr", "blosc")]


@pytest.mark.parametrize("backend,suffix,compression", BOTH)
def test_old_stores_without_checksums_still_read_and_append(tmp_path, monkeypatch, backend, suffix, compression):
    cls = {"hdf5": HDF5Store, "zarr": ZarrStore}[backend]
    path = tmp_path / f"old{suffix}"
    old = batch(6)
    with monkeypatch.context() as m:  # what this code wrote before checksums
        m.setattr(cls, "stores_checksums", False)
        with imgbench.open(path, "w", compression=compression) as s:
            s.extend(old, labels=np.arange(6))
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), old)
    report = verify(path)
    assert report.ok and not report.checksummed
    new = mixed(3, seed=50)
    with imgbench.open(path, "a") as s:
        s.extend(new, labels=np.arange(3))
    everything = list(old) + new
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and len(s) == 9
        assert all(same(a, b) for a, b in zip(s.read_many(), everything))
    if backend == "hdf5":
        with h5py.File(path, "r") as f:
            assert "checksums" not in f and "checksum" not in f.attrs["imgbench"]
    else:
        assert not (path / "checksums").exists()
        assert "checksum" not in zarr.open_group(str(path), mode="r").attrs["imgbench"]
    assert verify(path).ok and not verify(path).checksummed


@pytest.mark.parametrize("backend,suffix,compression", BOTH)
def test_checksums_are_loaded_only_when_needed(tmp_path, monkeypatch, backend, suffix, compression):
    cls = {"hdf5": HDF5Store, "zarr": ZarrStore}[backend]
    path = tmp_path / f"lazy{suffix}"
    images = batch(10)
    with imgbench.open(path, "w", compression=compression) as s:
        s.extend(images)

    def refuse(self):
        raise AssertionError("checksums read without verify")

    with monkeypatch.context() as m:
        m.setattr(cls, "_get_checksums", refuse)
        with imgbench.open(path) as s:
            assert same(s[4], images[4]) and same(s.read_many(), images) and same(s.read_many([9, 0])[1], images[0])
    with imgbench.open(path, verify=True) as s:
        clone = pickle.loads(pickle.dumps(s))
        assert same(clone[3], images[3]) and clone.verify
        clone.close()


@pytest.mark.parametrize("backend,suffix", [("hdf5", ".h5"), ("zarr", ".zarr")])
def test_empty_checksummed_store_opens_and_appends(tmp_path, backend, suffix):
    path = tmp_path / f"empty{suffix}"
    with imgbench.open(path, "w"):
        pass
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 0 and len(s.checksums) == 0
    images = batch(4)
    with imgbench.open(path, "a") as s:
        s.extend(images)
    with imgbench.open(path, verify=True) as s:
        assert (s.checksums == checksum.digests(images)).all() and same(s.read_many(), images)
