"""zarr backend specifics: shards not files, plain-zarr readability, codecs, damage and lies."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr

import imgbench
from imgbench.storage import zarr as zarr_backend

from .conftest import same, sample, snapshot

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


def read_everything(path) -> None:
    with imgbench.open(path) as s:
        s.read_many()
        for i in range(len(s)):
            s[i]
        s.labels


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


@pytest.mark.parametrize("compression,bad", [("zstd", 0), ("zstd", 23), ("blosc", -1), ("blosc", 10), ("blosc", 2.5),
                                             ("none", 1)])
def test_bad_levels_are_refused_before_writing(tmp_path, compression, bad):
    with pytest.raises(imgbench.UnsupportedError, match="level"):
        imgbench.open(tmp_path / "x.zarr", "w", compression=compression, level=bad)
    assert list(tmp_path.iterdir()) == []


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
