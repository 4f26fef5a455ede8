"""Damaged, truncated, foreign or newer stores raise CorruptStoreError, never wrong pixels."""

from __future__ import annotations

import json
import struct

import h5py
import lmdb
import numpy as np
import pytest

import imgbench

from .conftest import sample, store_path

N = 20


def build(tmp_path, backend, compression=None, n=N):
    path = store_path(tmp_path, backend, f"c-{compression}")
    images = np.stack([sample((16, 16, 3), np.uint8, seed=i) for i in range(n)])
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=np.arange(n))
    return path, images


def read_everything(path):
    with imgbench.open(path) as s:
        s.read_many()
        for i in range(len(s)):
            s[i]
        s.labels


def flip_bit(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", ["png", "none"])
def test_disk_damage(tmp_path, compression):
    path, images = build(tmp_path, "disk", compression)
    suffix = ".png" if compression == "png" else ".npy"
    victim = path / f"00000003{suffix}"
    # Truncated image file.
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with imgbench.open(path) as s:
        assert np.array_equal(s[2], images[2])
        with pytest.raises(imgbench.CorruptStoreError, match="image 3|raw image|npy"):
            s[3]
        with pytest.raises(imgbench.CorruptStoreError):
            s.read_many()
    # Missing file.
    victim.unlink()
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="missing"):
        s[3]
    # A file whose header claims other dimensions (a decompression bomb, say).
    other = sample((4000, 4000), np.uint8) if compression == "png" else sample((17, 16, 3), np.uint8)
    if compression == "png":
        import imagecodecs

        victim.write_bytes(imagecodecs.png_encode(other))
    else:
        np.save(victim, other)
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s[3]


def test_disk_png_bit_flip_is_detected(tmp_path):
    path, _ = build(tmp_path, "disk", "png")
    victim = path / "00000005.png"
    flip_bit(victim, len(victim.read_bytes()) // 2)  # inside IDAT: PNG chunk CRCs catch it
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s[5]


@pytest.mark.parametrize(
    "sidecar",
    [
        b"{not json",
        b"[]",
        json.dumps({"format": "other"}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": -1}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": 3,
                    "labels": False, "images": {"shape": [10**9, 10**9, 3], "dtype": "|u1"}}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": 3,
                    "labels": False, "images": {"shape": [2, 2], "dtype": "object"}}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "gif", "count": 0,
                    "labels": False}).encode(),
    ],
)
def test_disk_bad_sidecar(tmp_path, sidecar):
    path, _ = build(tmp_path, "disk", "png")
    (path / "imgbench.json").write_bytes(sidecar)
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)


def test_huge_declared_shape_does_not_allocate(tmp_path):
    path, _ = build(tmp_path, "disk", "png", n=1)
    meta = json.loads((path / "imgbench.json").read_bytes())
    meta["images"] = {"shape": [100000, 100000, 4], "dtype": "<u2"}
    (path / "imgbench.json").write_text(json.dumps(meta))
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="PNG"):
        s[0]  # the PNG header disagrees; 80 GB are never requested


@pytest.mark.parametrize("backend", ["disk", "lmdb", "hdf5"])
def test_newer_format_version_is_refused(tmp_path, backend):
    path, _ = build(tmp_path, backend)
    if backend == "disk":
        meta = json.loads((path / "imgbench.json").read_bytes())
        meta["version"] = 99
        (path / "imgbench.json").write_text(json.dumps(meta))
    elif backend == "lmdb":
        env = lmdb.open(str(path), max_dbs=2)
        with env.begin(write=True) as txn:
            meta = json.loads(txn.get(b"~imgbench/meta"))
            meta["version"] = 99
            txn.put(b"~imgbench/meta", json.dumps(meta).encode())
        env.close()
    else:
        with h5py.File(path, "r+") as f:
            meta = json.loads(f.attrs["imgbench"])
            meta["version"] = 99
            f.attrs["imgbench"] = json.dumps(meta)
    with pytest.raises(imgbench.FormatVersionError, match="upgrade") as info:
        imgbench.open(path)
    assert isinstance(info.value, imgbench.CorruptStoreError)


def _lmdb_put(path, key, value):
    env = lmdb.open(str(path), max_dbs=2)
    db = env.open_db(b"images")
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, value, db=db)
    env.close()


def _lmdb_get(path, key):
    env = lmdb.open(str(path), max_dbs=2, readonly=True)
    db = env.open_db(b"images")
    with env.begin() as txn:
        value = txn.get(key, db=db)
    env.close()
    return value


@pytest.mark.parametrize("compression", ["none", "png", "zstd"])
def test_lmdb_damaged_values(tmp_path, compression):
    path, images = build(tmp_path, "lmdb", compression)
    key = struct.pack(">Q", 4)
    good = _lmdb_get(path, key)
    cases = {
        "truncated": good[: len(good) - 5],
        "header": b"XX" + good[2:],
        "shape": good[:14] + struct.pack("<I", 10**6) + good[18:],
        "codec": good[:3] + bytes([9]) + good[4:],
        "short": b"IB",
    }
    if compression != "none":
        body = bytearray(good)
        body[len(body) // 2] ^= 0x01
        cases["bitflip"] = bytes(body)  # zstd frame checksum / PNG CRC
    for name, value in cases.items():
        _lmdb_put(path, key, value)
        with imgbench.open(path) as s:
            assert np.array_equal(s[3], images[3])
            with pytest.raises(imgbench.CorruptStoreError):
                s[4]
            with pytest.raises(imgbench.CorruptStoreError):
                s.read_many()
    _lmdb_put(path, key, None)
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="missing"):
        s[4]
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s.read_many()


def test_lmdb_foreign_and_garbage(tmp_path):
    foreign = tmp_path / "foreign.lmdb"
    env = lmdb.open(str(foreign))
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    with pytest.raises(imgbench.CorruptStoreError, match="without imgbench metadata"):
        imgbench.open(foreign)
    garbage = tmp_path / "garbage.lmdb"
    garbage.mkdir()
    (garbage / "data.mdb").write_bytes(b"\x00garbage" * 5000)
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(garbage)
    tiny = tmp_path / "tiny.lmdb"
    tiny.mkdir()
    (tiny / "data.mdb").write_bytes(b"")
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(tiny)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_hdf5_truncated(tmp_path, compression):
    path, _ = build(tmp_path, "hdf5", compression, n=200)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)


def test_hdf5_compressed_chunk_damage(tmp_path):
    path, images = build(tmp_path, "hdf5", "zstd", n=50)
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
    path, _ = build(tmp_path, "hdf5")
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
