"""Stores read with plain h5py, lmdb, numpy and an image decoder, as the README layouts say."""

from __future__ import annotations

import json
import struct

import h5py
import hdf5plugin  # noqa: F401 - registers the zstd filter for plain h5py
import imagecodecs
import lmdb
import numpy as np
from PIL import Image

import imgbench

from .conftest import sample


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


def test_lmdb_with_plain_lmdb(tmp_path):
    batch = np.stack([sample((8, 8), np.uint16, seed=i) for i in range(70000 // 1000)])
    path = tmp_path / "s.lmdb"
    labels = np.arange(len(batch)) * 3
    with imgbench.open(path, "w", compression="zstd") as s:
        s.extend(batch, labels=labels)
    env = lmdb.open(str(path), readonly=True, max_dbs=2, lock=False)
    images = env.open_db(b"images")
    with env.begin() as txn:
        meta = json.loads(txn.get(b"~imgbench/meta"))
        assert meta["count"] == len(batch) and meta["uniform"] == {"shape": [8, 8], "dtype": "<u2"}
        raw_labels = txn.get(b"~imgbench/labels/00000000")
        assert np.frombuffer(raw_labels, "<i8").tolist() == labels.tolist()
        for i in (0, 17, len(batch) - 1):
            value = txn.get(struct.pack(">Q", i), db=images)
            magic, version, codec, dtype_id, ndim, _, h, w, c = struct.unpack_from("<2sBBBBH3I", value)
            assert (magic, version, codec, dtype_id, ndim, h, w, c) == (b"IB", 1, 2, 2, 2, 8, 8, 0)
            import zstandard

            pixels = np.frombuffer(zstandard.ZstdDecompressor().decompress(value[20:]), "<u2").reshape(h, w)
            assert np.array_equal(pixels, batch[i])
        keys = [k for k, _ in txn.cursor(db=images)]
        assert keys == [struct.pack(">Q", i) for i in range(len(batch))]
    env.close()


def test_disk_png_files_open_in_any_viewer(tmp_path):
    images = [sample((10, 12, 3), np.uint8), sample((10, 12), np.uint16), sample((5, 5, 4), np.uint8)]
    path = tmp_path / "pngs"
    with imgbench.open(path, "w", backend="disk") as s:
        s.extend(images, labels=[7, 8, 9])
    meta = json.loads((path / "imgbench.json").read_text())
    assert meta["image_labels"] == [7, 8, 9] and meta["count"] == 3
    assert meta["images"]["shapes"] == [[10, 12, 3], [10, 12], [5, 5, 4]]
    assert np.array_equal(np.asarray(Image.open(path / "00000000.png")), images[0])
    assert np.array_equal(np.asarray(Image.open(path / "00000001.png")), images[1])
    assert np.array_equal(np.asarray(Image.open(path / "00000002.png")), images[2])
    assert np.array_equal(imagecodecs.imread(path / "00000001.png"), images[1])


def test_disk_16bit_rgb_png_is_standard(tmp_path):
    image = sample((6, 7, 3), np.uint16)
    path = tmp_path / "rgb16"
    with imgbench.open(path, "w", backend="disk") as s:
        s.append(image)
    data = (path / "00000000.png").read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (7, 6, 16, 2)
    assert np.array_equal(imagecodecs.png_decode(data), image)


def test_disk_raw_files_are_plain_npy(tmp_path):
    image = sample((6, 7, 2), np.float32)
    path = tmp_path / "npys"
    with imgbench.open(path, "w", backend="disk", compression="none") as s:
        s.append(image)
    loaded = np.load(path / "00000000.npy", allow_pickle=False)
    assert loaded.tobytes() == image.tobytes() and loaded.shape == image.shape


def _refuse_unpickling(*args, **kwargs):
    raise AssertionError("a store was unpickled: stored data must never run code when read")


def test_reading_never_unpickles(tmp_path, config, monkeypatch):
    """Every backend and codec: open, read everything, labels, attrs and checksums with pickle disabled."""
    import pickle

    backend, compression = config
    path = tmp_path / f"s-{backend}"
    images = [sample((6, 5, 3), np.uint8, seed=k) for k in range(4)] + [sample((7, 4), np.uint16)]
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=[1, 2, 3, 4, 5])
        s.attrs["note"] = {"nested": [1, "two"]}
    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, _refuse_unpickling)
    with imgbench.open(path, verify=True) as s:
        got = s.read_many()
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, images))
        assert list(s.labels) == [1, 2, 3, 4, 5] and s.attrs["note"] == {"nested": [1, "two"]}
        assert s.checksums is not None and len(s.checksums) == 5
