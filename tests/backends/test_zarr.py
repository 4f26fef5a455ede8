"""The zarr backend (v3, sharded): shards not files, plain-zarr readability, codecs, the digests array,
damage, lies and hostile stores.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing, bad levels) is
covered for every backend by ``tests/contract/``; this file looks inside the arrays and shards.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash
import zarr

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.storage import zarr as zarr_backend

from ..conftest import same, sample, snapshot
from ..contract.backends import ZarrKit, flip_bit
from . import hostile
from .stores import read_everything
from .hostile import assert_refused, probe

COMPRESSIONS = ["none", "zstd", "blosc"]


def build(path, n=40, compression=None, labels=True, **options):
    images = np.stack([sample((16, 12, 3), np.uint8, seed=i) for i in range(n)])
    with imgbench.open(path, "w", backend="zarr", compression=compression, **options) as s:
        s.extend(images, labels=np.arange(n) if labels else None)
        s.attrs["site"] = "A"
    return images


def mixed_images():
    return [
        sample((7, 5), np.uint8, seed=1),
        sample((3, 3, 4), np.float32, seed=2),
        sample((2, 6, 1), np.int16, seed=3),
        sample((9, 4, 3), np.uint16, seed=4),
    ]


def record(path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]["imgbench"]


def rewrite_record(path, **changes) -> None:
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["imgbench"].update(changes)
    (path / "zarr.json").write_text(json.dumps(doc))


# ------------------------------------------------------------------ layout
def test_many_images_are_a_handful_of_shard_files(tmp_path):
    path = tmp_path / "many.zarr"
    images = np.random.default_rng(0).integers(0, 256, (10_000, 16, 16, 3), dtype=np.uint8)
    with imgbench.open(path, "w") as s:  # the suffix names the backend
        s.extend(images, labels=np.arange(10_000))
    usage = imgbench.disk_usage(path)
    assert usage["files"] <= 8, usage  # zarr.json x4, one shard each of images, labels, checksums
    assert usage["apparent"] < images.nbytes * 1.1 + (1 << 20)
    with imgbench.open(path) as s:
        assert s.backend == "zarr" and len(s) == 10_000
        assert same(s.read_many(), images)
        picks = [9999, 0, 4321, 4321, 17]
        assert same(s.read_many(picks), images[picks])
        assert s.labels.tolist() == list(range(10_000))


def test_options_shape_the_grid_and_full_shards_are_never_rewritten(tmp_path):
    path = tmp_path / "grid"
    images = build(path, n=100, shard_images=32, chunk_images=8)
    shards = sorted(p.name for p in (path / "images").iterdir() if p.name.startswith("c."))
    assert len(shards) == 4  # ceil(100 / 32)
    meta = zarr.open_array(str(path / "images"), mode="r").metadata.to_dict()
    assert meta["chunk_grid"]["configuration"]["chunk_shape"][0] == 32
    full = os.stat(path / "images" / "c.0.0.0.0").st_ino
    extra = np.stack([sample((16, 12, 3), np.uint8, seed=500 + i) for i in range(10)])
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=np.arange(10))
    assert os.stat(path / "images" / "c.0.0.0.0").st_ino == full, "a full shard is never rewritten by an append"
    with imgbench.open(path) as s:
        assert same(s.read_many(), np.concatenate([images, extra]))


def test_without_suffix_the_backend_must_be_named(tmp_path):
    with pytest.raises(imgbench.UnsupportedError, match="backend="):
        imgbench.open(tmp_path / "plain", "w")
    build(tmp_path / "plain")
    with imgbench.open(tmp_path / "plain") as s:
        assert s.backend == "zarr"


# ------------------------------------------------------------------ plain zarr
def test_plain_zarr_reads_a_uniform_store(tmp_path):
    path = tmp_path / "u.zarr"
    images = build(path, n=30, compression="zstd")
    g = zarr.open_group(str(path), mode="r")
    meta = g.attrs["imgbench"]
    assert meta["count"] == meta["uniform_count"] == 30 and meta["layout"] == "uniform"
    assert meta["compression"] == "zstd" and meta["level"] == 3 and meta["attrs"] == {"site": "A"}
    assert np.array_equal(g["images"][: meta["count"]], images)
    assert g["labels"][: meta["count"]].tolist() == list(range(30))


def test_plain_zarr_reads_a_mixed_store_as_documented(tmp_path):
    path = tmp_path / "m.zarr"
    first = np.stack([sample((6, 6), np.uint16, seed=i) for i in range(3)])
    rest = mixed_images()
    with imgbench.open(path, "w", compression="blosc") as s:
        s.extend(first, labels=[1, 2, 3])
        s.extend(rest, labels=[4, 5, 6, 7])
    g = zarr.open_group(str(path), mode="r")
    meta = g.attrs["imgbench"]
    n, u = meta["count"], meta["uniform_count"]
    assert (n, u, meta["layout"]) == (7, 3, "mixed")
    assert np.array_equal(g["images"][:u], first)
    off = g["offsets"][: n - u + 1]
    data, shapes, ids = g["data"][: off[-1]], g["shapes"][: n - u], g["dtypes"][: n - u]
    for j, expected in enumerate(rest):
        dims = [int(d) for d in shapes[j] if d]
        got = data[off[j] : off[j + 1]].view(meta["dtype_ids"][str(ids[j])]).reshape(dims)
        assert same(got, expected)
    assert g["labels"][:n].tolist() == [1, 2, 3, 4, 5, 6, 7]


# ------------------------------------------------------------------ codecs
@pytest.mark.parametrize("compression,level", [("none", None), ("zstd", 1), ("zstd", 19), ("blosc", 0), ("blosc", 9)])
def test_every_compression_round_trips_uniform_and_variable_images(tmp_path, compression, level):
    path = tmp_path / f"{compression}-{level}.zarr"
    batch = np.stack([sample((10, 8), np.float32, seed=i) for i in range(20)])
    varied = mixed_images()
    with imgbench.open(path, "w", compression=compression, level=level) as s:
        s.extend(batch)
        for im in varied:
            s.append(im)
        s.extend(batch[:2])
    expected = list(batch) + varied + list(batch[:2])
    with imgbench.open(path) as s:
        assert (s.compression, s.level) == (compression, level)
        everything = s.read_many()
        assert all(same(a, b) for a, b in zip(everything, expected))
        assert all(same(s[i], expected[i]) for i in (0, 19, 20, 21, 22, 23, 24, 25))
        order = [25, 3, 21, 21, 0, 23]
        assert all(same(a, expected[i]) for a, i in zip(s.read_many(order), order))
    names = json.dumps(json.loads((path / "images" / "zarr.json").read_text())["codecs"])
    assert "crc32c" in names and (compression == "none" or compression in names)


@pytest.mark.parametrize("options,match", [
    ({"shard_images": 0}, "shard_images"), ({"chunk_images": "8"}, "chunk_images"),
    ({"threads": 0}, "threads"), ({"shard_images": 10, "chunk_images": 3}, "multiple"),
])
def test_bad_options_are_refused(tmp_path, options, match):
    with pytest.raises(imgbench.UnsupportedError, match=match):
        imgbench.open(tmp_path / "x.zarr", "w", **options)


def test_threads_option_round_trips(tmp_path):
    images = build(tmp_path / "t.zarr", threads=2)
    with imgbench.open(tmp_path / "t.zarr", threads=1) as s:
        assert same(s.read_many(), images)


# ------------------------------------------------------------------ damage
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_bit_flips_and_truncation_are_detected(tmp_path, compression):
    path = tmp_path / f"d-{compression}.zarr"
    build(path, n=200, compression=compression)
    shard = path / "images" / "c.0.0.0.0"
    good = shard.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 3] ^= 0x10
    shard.write_bytes(bytes(damaged))
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)
    shard.write_bytes(good[: len(good) // 2])
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)
    shard.write_bytes(good[:-3] + b"\x00\x00\x00")  # the shard index
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s[5]
    shard.unlink()
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="missing"):
        s[5]


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"zarr_format": 3, "node_type": "group"}',
                                     b'{"zarr_format": 3, "node_type": "group", "attributes": {"imgbench": 7}}'])
def test_garbage_record_is_refused(tmp_path, content):
    path = tmp_path / "g.zarr"
    build(path)
    (path / "zarr.json").write_bytes(content)
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(path)


@pytest.mark.parametrize("changes,match", [
    ({"count": 500, "uniform_count": 500}, "holds 40|missing|far fewer"),
    ({"count": 10**15, "uniform_count": 10**15}, "holds 40|missing|far fewer"),
    ({"uniform_count": 41}, "uniform_count"),
    ({"uniform_count": -1}, "uniform_count"),
    ({"image": {"shape": [16, 12, 3], "dtype": "<f8"}}, "dtype"),
    ({"image": {"shape": [16, 12, 9], "dtype": "|u1"}}, "impossible"),
    ({"version": 99}, "upgrade"),
    ({"compression": "lzma"}, "compression"),
])
def test_a_lying_record_is_refused(tmp_path, changes, match):
    path = tmp_path / "l.zarr"
    build(path)
    rewrite_record(path, **changes)
    with pytest.raises(imgbench.CorruptStoreError, match=match):
        read_everything(path)


def test_huge_declared_shapes_are_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.zarr"
    build(path, n=3)
    rewrite_record(path, image={"shape": [100000, 100000, 4], "dtype": "<u2"})
    meta_path = path / "images" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"], meta["data_type"] = [3, 100000, 100000, 4], "uint16"
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [1, 100000, 100000, 4]
    meta["codecs"][0]["configuration"]["chunk_shape"] = [1, 100000, 100000, 4]
    meta_path.write_text(json.dumps(meta))
    with imgbench.open(path) as s:  # 80 GB per image are declared, a few KB stored
        with pytest.raises(imgbench.CorruptStoreError, match="far fewer"):
            s[0]
        with pytest.raises(imgbench.CorruptStoreError, match="far fewer|missing"):
            s.read_many()


def test_codecs_imgbench_does_not_write_are_never_run(tmp_path):
    path = tmp_path / "c.zarr"
    build(path)
    meta_path = path / "images" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"][0]["configuration"]["codecs"].insert(1, {"name": "gzip", "configuration": {"level": 1}})
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(imgbench.CorruptStoreError, match="codecs"):
        imgbench.open(path)


def test_ragged_index_lies_are_refused(tmp_path):
    path = tmp_path / "r.zarr"
    with imgbench.open(path, "w") as s:
        s.extend(mixed_images())
    g = zarr.open_group(str(path), mode="r+")
    g["shapes"][1] = [3, 3, 4000]  # claims far more bytes than stored
    with imgbench.open(path) as s:
        assert same(s[0], mixed_images()[0])  # image 0 is in the uniform array
        with pytest.raises(imgbench.CorruptStoreError, match="disagrees"):
            s[1]
    g["shapes"][1] = [3, 3, 4]
    g["offsets"][1] = -5
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="inconsistent"):
        s.read_many()


def test_foreign_zarr_group_is_not_taken_for_a_store(tmp_path):
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").create_array("x", shape=(3,), dtype="u1")
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(foreign)
    with pytest.raises(imgbench.StoreExistsError, match="not an imgbench store"):
        imgbench.open(foreign, "w", backend="zarr")


# ------------------------------------------------------------------ appends and readers
def test_appender_removes_temporaries_of_a_killed_write(tmp_path):
    path = tmp_path / "p.zarr"
    build(path)
    before = snapshot(path)
    stale = path / "images" / "c.0.0.0.0.0123456789abcdef.partial"
    stale.write_bytes(b"half a shard")
    assert snapshot(path) == before, "readers ignore temporaries"
    with imgbench.open(path, "a") as s:
        assert len(s) == 40
    assert not stale.exists()


def test_reader_keeps_the_version_of_the_last_shard_it_opened(tmp_path):
    """An appender rewrites the last shard by rename; a reader that read it keeps reading that version."""
    path = tmp_path / "v.zarr"
    images = build(path, n=50)
    with imgbench.open(path) as reader:
        assert same(reader[49], images[49])  # the last shard is now open in the reader
        shard = path / "images" / "c.0.0.0.0"
        replacement = path / "images" / "replacement"
        replacement.write_bytes(b"\x00" * shard.stat().st_size)  # a different file renamed over it
        os.replace(replacement, shard)
        assert same(reader.read_many(), images)
        assert same(reader[3], images[3])
    with imgbench.open(path) as fresh, pytest.raises(imgbench.CorruptStoreError):
        fresh[3]


def test_uncommitted_data_beyond_count_is_ignored_and_overwritten(tmp_path):
    path = tmp_path / "b.zarr"
    images = build(path, n=10)
    with imgbench.open(path, "a") as s:
        s.extend(np.zeros((5, 16, 12, 3), np.uint8), labels=[0] * 5)
        s.flush()
        s.extend(np.ones((5, 16, 12, 3), np.uint8), labels=[1] * 5)
        s._abort_quietly()  # what a crash does to the second batch: written, never committed
    assert zarr.open_array(str(path / "images"), mode="r").shape[0] == 20
    with imgbench.open(path) as s:
        assert len(s) == 15 and same(s.read_many()[:10], images)
    extra = np.full((2, 16, 12, 3), 7, np.uint8)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[7, 7])
    with imgbench.open(path) as s:
        assert len(s) == 17 and same(s.read_many()[15:], extra) and s.labels.tolist()[-3:] == [0, 7, 7]


def test_module_imports_the_real_zarr():
    assert zarr_backend.zarr.__name__ == "zarr" and hasattr(zarr_backend.zarr, "open_group")


# ------------------------------------------------------------------ checksums: the layout
def batch(n: int, shape=(16, 12, 3), dtype=np.uint8, seed: int = 0) -> np.ndarray:
    return np.stack([sample(shape, dtype, seed=seed + i) for i in range(n)])

def mixed(n: int, seed: int = 0) -> list[np.ndarray]:
    """Images of different shapes and dtypes (HDF5's ragged layout, zarr's ragged tail)."""
    kinds = [((7, 5), np.uint8), ((9, 4, 3), np.uint16), ((3, 3, 4), np.float32), ((6, 8, 1), np.int16)]
    return [sample(*kinds[i % len(kinds)], seed=seed + i) for i in range(n)]

def zarr_build(path, images, compression, labels=True, **options):
    with imgbench.open(path, "w", backend="zarr", compression=compression, **options) as s:
        s.extend(images, labels=np.arange(len(images)) if labels else None)
    return images

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_zarr_flip_in_a_shared_chunk_reports_each_image_it_held(tmp_path, compression):
    path = tmp_path / f"s-{compression}.zarr"
    images = zarr_build(path, batch(600), compression)  # default grid: many images per inner chunk
    per = int(zarr.open_array(str(path / "images"), mode="r").chunks[0])
    assert 1 < per < 300
    shard, offset, nbytes = ZarrKit.chunk_location(path, "images", 1)
    flip_bit(shard, offset + (nbytes - 4) // 2)
    held = list(range(per, 2 * per))
    report = verify(path)
    assert sorted(report.damaged) == held
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {held[-1]}\b"):
            s[held[-1]]
        assert same(s[per - 1], images[per - 1]) and same(s[2 * per], images[2 * per])

@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_zarr_bit_flip_in_the_ragged_tail(tmp_path, compression):
    path = tmp_path / f"r-{compression}.zarr"
    images = mixed(12)
    zarr_build(path, images, compression)
    # image 0 is the uniform run; 1.. are ragged, all in one 128 KiB chunk of 'data'
    with imgbench.open(path) as s:
        assert s._ucount == 1
    shard, offset, nbytes = ZarrKit.chunk_location(path, "data", 0)
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


# ------------------------------------------------------------------ hostile stores (see hostile.py)
def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return struct.pack("<I", google_crc32c.value(data))

def _zarr_replace_inner_chunk(array_dir: Path, payload: bytes) -> None:
    """Swap inner chunk 0 of shard 0 for ``payload`` (+ its CRC-32C), rebuilding the shard index."""
    arr = zarr.open_array(str(array_dir), mode="r")
    per = arr.shards[0] // arr.chunks[0]
    shard = next(p for p in array_dir.iterdir() if p.name.startswith("c."))
    data = shard.read_bytes()
    size = per * 16 + 4
    index = np.frombuffer(data[-size:-4], "<u8").reshape(per, 2)
    empty = 2**64 - 1
    chunks = [None if int(o) == empty else data[int(o) : int(o) + int(n)] for o, n in index.tolist()]
    chunks[0] = payload + _crc32c(payload)
    body, new = b"", np.full((per, 2), empty, np.uint64)
    for k, chunk in enumerate(chunks):
        if chunk is not None:
            new[k] = (len(body), len(chunk))
            body += chunk
    raw_index = new.astype("<u8").tobytes()
    shard.write_bytes(body + raw_index + _crc32c(raw_index))

def test_zarr_zstd_inner_chunk_bomb_is_refused(tmp_path):
    path = hostile.build(tmp_path, "zarr", "zstd", labels=False)
    _zarr_replace_inner_chunk(path / "images", hostile.zstd_rle(256 << 20))
    assert_refused(probe(path, "one:1"))

def test_zarr_zstd_inner_chunk_declaring_a_terabyte_is_refused(tmp_path):
    path = hostile.build(tmp_path, "zarr", "zstd", labels=False)
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    _zarr_replace_inner_chunk(path / "images", frame)
    assert_refused(probe(path, "one:1"))


@pytest.mark.parametrize("case", [c for c in hostile.SYMLINK_BUGS if c.startswith("zarr")])
def test_store_files_symlinked_outside_the_store_are_not_followed(tmp_path, case):
    hostile.assert_not_followed(*hostile.symlinked(tmp_path, case))


@pytest.fixture(scope="module")
def special_results(tmp_path_factory) -> dict[str, dict]:
    """Every case that may block, probed at once: the hangs cost HANG_TIMEOUT once, not once each."""
    return hostile.probe_at_once(tmp_path_factory, [c for c in hostile.SPECIAL_BUGS if c.startswith("zarr")])


@pytest.mark.parametrize("case", [c for c in hostile.SPECIAL_BUGS if c.startswith("zarr")])
def test_fifos_and_devices_in_a_store_are_refused_without_blocking(special_results, case):
    assert_refused(special_results[case])
