"""Sharded datasets (imgbench.sharded): the Store contract over a directory of shard stores plus a manifest."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imgbench
from imgbench import api, sharded
from imgbench.sharded import store as sharded_store
from imgbench.cli import main
from imgbench.storage import registry

from ..conftest import forked_results, same, sample, snapshot

#: inner backends the contract runs on (fast ones); the round trip runs on every backend
INNER = ["lmdb", "npy", "zarr"]
SHAPES = [(7, 5), (7, 5, 1), (6, 9, 2), (8, 4, 3), (5, 5, 4), (1, 1), (1, 13, 3)]


def images(n, seed=0, shape=(6, 7, 3), dtype=np.uint8):
    return np.stack([sample(shape, dtype, seed=seed + i) for i in range(n)])


def labels_for(n):
    return np.arange(n) * 3 - 7


def make(path, backend="lmdb", n=23, per=5, seed=0, labels=True, **kw):
    batch = images(n, seed)
    with imgbench.open(path, "w", backend=backend, images_per_shard=per, **kw) as s:
        s.extend(batch, labels=labels_for(n) if labels else None)
        s.attrs["seed"] = seed
    return batch


def manifest(path):
    return json.loads((Path(path) / sharded.MANIFEST).read_text())


def rewrite(path, fn):
    m = manifest(path)
    fn(m)
    (Path(path) / sharded.MANIFEST).write_text(json.dumps(m))


def siblings(path):
    return sorted(p.name for p in Path(path).parent.iterdir() if p.name != Path(path).name)


# ------------------------------------------------------------------ contract
def test_backends_list_is_unchanged():
    assert imgbench.backends() == ["disk", "hdf5", "lmdb", "npy", "tar", "zarr"]


@pytest.mark.parametrize("backend", imgbench.backends())
def test_round_trip_every_shape_and_dtype(tmp_path, backend):
    default = registry.get(backend).compressions[0]
    dtypes = ["uint8", "uint16"] if default == "png" else ["uint8", "uint16", "int16", "float32"]
    want = [sample(s, d, seed=i) for i, (s, d) in enumerate((s, d) for s in SHAPES for d in dtypes)]
    path = tmp_path / "ds"
    with imgbench.open(path, "w", backend=backend, images_per_shard=3) as s:
        for im in want:
            s.append(im)
        assert len(s) == len(want)
    assert sharded.detect(path) and not registry.get(backend).detect(path)
    with imgbench.open(path) as s:
        assert isinstance(s, imgbench.Store) and isinstance(s, sharded.ShardedStore)
        assert s.backend == backend and s.compression == default and s.shards == -(-len(want) // 3)
        assert len(s) == len(want) and s.labels is None
        assert all(same(s[i], im) for i, im in enumerate(want))
        back = s.read_many()
        assert isinstance(back, list) and all(same(b, im) for b, im in zip(back, want))
        assert all(same(a, b) for a, b in zip(s, want))


@pytest.mark.parametrize("backend", INNER)
def test_stacked_reads_labels_attrs_and_order(tmp_path, backend):
    path = tmp_path / "ds"
    batch = make(path, backend, n=23, per=5)
    with imgbench.open(path) as s:
        assert len(s) == 23 and s.shards == 5 and s.attrs["seed"] == 0
        out = s.read_many()
        assert isinstance(out, np.ndarray) and same(out, batch)
        assert s.labels.dtype == np.int64 and s.labels.tolist() == labels_for(23).tolist()
        order = [22, 0, 5, 5, -1, 17, 4, 4, 9, 10, 0]
        assert same(s.read_many(order), batch[order])
        unsigned = (np.array(order) % 23).astype(np.uint64)
        assert same(s.read_many(unsigned), batch[unsigned.astype(np.int64)])
        assert same(s[-23], batch[0]) and same(s[-1], batch[22])
        assert same(s[3:19:4], batch[3:19:4]) and same(s[::-1], batch[::-1])
        assert s.read_many([]) == []
        for bad in (23, -24, 10**12):
            with pytest.raises(IndexError):
                s[bad]
            with pytest.raises(IndexError):
                s.read_many([0, bad])
        with pytest.raises(TypeError):
            s["0"]
        sums = s.checksums
        assert sums.dtype == np.uint64 and len(sums) == 23
        with pytest.raises(imgbench.UnsupportedError):
            s.append(batch[0])
        with pytest.raises(imgbench.UnsupportedError):
            s.attrs["x"] = 1


def test_mixed_shapes_across_shards_give_a_list_in_order(tmp_path):
    path = tmp_path / "ds"
    a, b = images(6, 0, (4, 4)), images(6, 10, (5, 3))
    with imgbench.open(path, "w", backend="npy", images_per_shard=4) as s:
        s.extend(a)
        s.extend(b)
    with imgbench.open(path) as s:
        everything = s.read_many()
        assert isinstance(everything, list) and len(everything) == 12
        assert all(same(x, y) for x, y in zip(everything, [*a, *b]))
        assert same(s.read_many([1, 5, 0]), a[[1, 5, 0]])  # these agree: stacked
        picked = s.read_many([7, 2, 7])
        assert isinstance(picked, list) and same(picked[0], b[1]) and same(picked[1], a[2])


def test_labels_rule_and_bad_images(tmp_path):
    with imgbench.open(tmp_path / "a", "w", backend="lmdb", images_per_shard=2) as s:
        s.append(np.zeros((3, 3), np.uint8), label=1)
        with pytest.raises(imgbench.InvalidImageError):
            s.append(np.zeros((3, 3), np.uint8))
        with pytest.raises(imgbench.InvalidImageError):
            s.append(np.zeros((3, 3), np.float64), label=2)
        with pytest.raises(imgbench.InvalidImageError):
            s.extend(np.zeros((2, 3, 3), np.uint8), labels=[1])
        s.append(np.ones((3, 3), np.uint8), label=2)
        s.append(np.ones((3, 3), np.uint8), label=3)
    with imgbench.open(tmp_path / "a") as s:
        assert s.labels.tolist() == [1, 2, 3] and s.shards == 2
    with pytest.raises(imgbench.UnsupportedError, match="png"):
        with imgbench.open(tmp_path / "b", "w", backend="lmdb", compression="png", images_per_shard=2) as s:
            s.append(np.zeros((3, 3), np.float32))
    assert not (tmp_path / "b").exists()


def test_bad_options_fail_before_anything_is_written(tmp_path):
    for kw in ({"images_per_shard": 0}, {"images_per_shard": 2.5}, {"bytes_per_shard": -1},
               {"images_per_shard": 2, "bytes_per_shard": 100}, {"images_per_shard": 2, "nosuch": 1},
               {"images_per_shard": 2, "compression": "gzip"}, {"images_per_shard": 2, "level": 99,
                                                                 "compression": "zstd"}):
        with pytest.raises(imgbench.UnsupportedError):
            imgbench.open(tmp_path / "ds", "w", backend="lmdb", **kw)
        assert siblings(tmp_path / "ds") == []
    with pytest.raises(imgbench.UnsupportedError, match="backend"):
        imgbench.open(tmp_path / "ds", "w", images_per_shard=2)  # no backend, no suffix
    make(tmp_path / "ok")
    with pytest.raises(imgbench.UnsupportedError, match="drop them to read"):
        imgbench.open(tmp_path / "ok", images_per_shard=3)
    with pytest.raises(imgbench.UnsupportedError, match="not npy"):
        imgbench.open(tmp_path / "ok", backend="npy")
    with imgbench.open(tmp_path / "ok", backend="lmdb", readahead=False) as s:  # shard options pass through
        assert len(s) == 23


def test_suffix_names_the_shard_backend(tmp_path):
    with imgbench.open(tmp_path / "train.lmdb", "w", images_per_shard=2) as s:
        s.extend(images(3))
    assert sorted(os.listdir(tmp_path / "train.lmdb")) == [sharded.MANIFEST, "shard-00000.lmdb", "shard-00001.lmdb"]
    with imgbench.open(tmp_path / "train.lmdb") as s:
        assert s.backend == "lmdb" and len(s) == 3


def test_bytes_per_shard_rolls_over_on_pixel_bytes(tmp_path):
    path = tmp_path / "ds"
    small, big = np.zeros((10, 10), np.uint8), np.zeros((20, 10), np.uint8)  # 100 and 200 bytes
    with imgbench.open(path, "w", backend="npy", bytes_per_shard=250) as s:
        s.extend([small, small, big, big, small, np.zeros((30, 10), np.uint8), small])
        s.extend(np.zeros((5, 10, 10), np.uint8))  # a stacked batch takes the same rule
    counts = [e["count"] for e in manifest(path)["shards"]]
    assert counts == [2, 1, 1, 1, 1, 2, 2, 2]  # a shard ends before the image that would pass 250 bytes
    sizes = [100, 100, 200, 200, 100, 300, 100, 100, 100, 100, 100, 100]
    assert [b - a for a, b in sharded.plan(12, sizes, bytes_per_shard=250)] == counts  # the same rule


def test_no_limit_means_a_plain_store(tmp_path):
    with imgbench.open(tmp_path / "p.lmdb", "w", images_per_shard=None, bytes_per_shard=None) as s:
        s.extend(images(3))
    assert not sharded.detect(tmp_path / "p.lmdb")
    assert registry.detect(tmp_path / "p.lmdb").name == "lmdb"
    make(tmp_path / "ds")
    assert api.detect(tmp_path / "ds") is sharded.ShardedStore and sharded.ShardedStore.detect(tmp_path / "ds")


def test_empty_dataset(tmp_path):
    with imgbench.open(tmp_path / "ds", "w", backend="lmdb", images_per_shard=4):
        pass
    with imgbench.open(tmp_path / "ds") as s:
        assert len(s) == 0 and s.shards == 0 and s.read_many() == [] and s.labels is None
        with pytest.raises(IndexError):
            s[0]


def test_disk_usage_info_and_verify(tmp_path, capsys):
    path = tmp_path / "ds"
    make(path, "lmdb")
    usage = imgbench.disk_usage(path)
    assert usage["files"] >= 1 + 5 * 2 and usage["apparent"] > 0
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 23 and info["backend"] == "lmdb" and info["shards"] == 5 and info["labelled"]
    assert main(["verify", str(path), "-q"]) == 0
    assert "ok: 23 images checked against their checksums" in capsys.readouterr().out


def test_verify_reports_damage_by_global_index(tmp_path, capsys):
    path = tmp_path / "ds"
    batch = make(path, "npy", n=23, per=5)
    data = path / "shard-00002" / "data.bin"  # images 10..14
    raw = bytearray(data.read_bytes())
    raw[3 * batch[0].nbytes + 7] ^= 0x40  # image 13, one bit
    data.write_bytes(bytes(raw))
    assert main(["verify", str(path), "-q"]) == 1
    out = capsys.readouterr().out
    assert "damaged image 13:" in out and "1 of 23 images damaged" in out
    with imgbench.open(path, verify=True) as s:
        assert same(s[12], batch[12])
        with pytest.raises(imgbench.CorruptStoreError, match="image 13 "):
            s[13]
        with pytest.raises(imgbench.CorruptStoreError, match="image 13 "):
            s.read_many([0, 22, 13])
    with imgbench.open(path) as s:  # without verify the damage is not looked for
        assert not same(s[13], batch[13])


def test_pickle_and_fork(tmp_path):
    path = tmp_path / "ds"
    batch = make(path, "lmdb", n=23, per=5)
    with imgbench.open(path) as s:
        s[0], s[22]  # shards open in the parent
        blob = pickle.dumps(s)
        assert len(blob) < 4000
        clone = pickle.loads(blob)
        assert len(clone) == 23 and clone.backend == "lmdb" and same(clone.read_many(), batch)
        assert clone.labels.tolist() == labels_for(23).tolist()
        results = forked_results(_child_sum, s)
        expected = int(batch.astype(np.int64).sum())
        assert results == [expected, expected]
        assert same(s.read_many([21, 1]), batch[[21, 1]])  # the parent's shards still work
    with pytest.raises(TypeError, match="pickle"):
        with imgbench.open(tmp_path / "w", "w", backend="lmdb", images_per_shard=2) as w:
            pickle.dumps(w)


def _child_sum(store, queue):
    queue.put(int(sum(store[i].astype(np.int64).sum() for i in range(len(store)))))


def test_many_shards_reader_keeps_few_open(tmp_path, monkeypatch):
    monkeypatch.setattr(sharded_store, "MAX_OPEN_SHARDS", 3)
    path = tmp_path / "ds"
    batch = make(path, "npy", n=40, per=2)
    with imgbench.open(path) as s:
        assert s.shards == 20
        assert same(s.read_many(), batch)
        assert len(s._open) <= 3
        for i in np.random.default_rng(0).permutation(40):
            assert same(s[int(i)], batch[i])
        assert same(s.read_many(list(range(39, -1, -3))), batch[39::-3])


# ------------------------------------------------------------------ modes
def test_x_refuses_existing_and_w_refuses_foreign(tmp_path):
    path = tmp_path / "ds"
    make(path)
    before = snapshot(path)
    with pytest.raises(imgbench.StoreExistsError):
        imgbench.open(path, "x", backend="lmdb", images_per_shard=2)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(imgbench.StoreExistsError, match="not an imgbench store"):
        imgbench.open(folder, "w", backend="lmdb", images_per_shard=2)
    assert (folder / "keep.txt").read_text() == "mine"
    assert snapshot(path) == before


def test_w_keeps_old_dataset_readable_until_close(tmp_path):
    path = tmp_path / "ds"
    make(path, n=12, per=5)
    old = snapshot(path)
    s = imgbench.open(path, "w", backend="npy", images_per_shard=2)
    s.extend(images(5, seed=100))
    s.flush()
    assert snapshot(path) == old
    s.close()
    new = snapshot(path)
    assert new[0] == 5 and new[3] is None
    with imgbench.open(path) as r:
        assert r.backend == "npy" and r.shards == 3
    assert siblings(path) == []


def test_w_aborted_keeps_old_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ds"
    make(path)
    old = snapshot(path)
    with pytest.raises(RuntimeError):
        with imgbench.open(path, "w", backend="lmdb", images_per_shard=2) as s:
            s.extend(images(7))
            raise RuntimeError("boom")
    assert snapshot(path) == old and siblings(path) == []


def test_plain_store_and_sharded_dataset_replace_each_other(tmp_path):
    path = tmp_path / "ds"
    make(path)
    with imgbench.open(path, "w", backend="lmdb") as s:  # no limit: a plain store replaces the dataset
        s.extend(images(3))
    with imgbench.open(path) as s:
        assert not isinstance(s, sharded.ShardedStore) and len(s) == 3
    make(path, n=4, per=3)
    with imgbench.open(path) as s:
        assert isinstance(s, sharded.ShardedStore) and len(s) == 4


def test_append_adds_shards_and_keeps_existing_ones(tmp_path):
    path = tmp_path / "ds"
    batch = make(path, "lmdb", n=12, per=5)
    first = {e["name"]: os.stat(path / e["name"] / "data.mdb").st_mtime_ns for e in manifest(path)["shards"]}
    more = images(8, seed=50)
    with imgbench.open(path, "a") as s:
        assert len(s) == 12
        s.extend(more[:3], labels=[1, 2, 3])
        s.flush()
        with imgbench.open(path) as r:  # a reader sees what was flushed
            assert len(r) == 15
        s.extend(more[3:], labels=[4, 5, 6, 7, 8])
        s.attrs["more"] = True
        with pytest.raises(imgbench.InvalidImageError):
            s.append(more[0])  # the label rule holds across sessions
    with imgbench.open(path) as s:
        assert len(s) == 20 and s.attrs["more"] is True and s.attrs["seed"] == 0
        assert same(s.read_many(), np.concatenate([batch, more]))
        assert s.labels.tolist() == [*labels_for(12).tolist(), 1, 2, 3, 4, 5, 6, 7, 8]
        # 5+5+2 at first; the flushed 3; then 5 (limit from the manifest)
        assert [e["count"] for e in manifest(path)["shards"]] == [5, 5, 2, 3, 5]
    assert {n: os.stat(path / n / "data.mdb").st_mtime_ns for n in first} == first, "existing shards untouched"
    with imgbench.open(path, "a") as s:
        with pytest.raises(imgbench.StoreLockedError):
            imgbench.open(path, "a")


def test_append_aborted_keeps_what_was_flushed_and_ignores_leftover_shards(tmp_path):
    path = tmp_path / "ds"
    make(path, "npy", n=6, per=4)
    with pytest.raises(RuntimeError):
        with imgbench.open(path, "a") as s:
            s.extend(images(5, seed=9), labels=[0] * 5)  # seals one full shard, not in the manifest
            raise RuntimeError("boom")
    with imgbench.open(path) as s:
        assert len(s) == 6 and s.shards == 2
    leftovers = set(os.listdir(path)) - {sharded.MANIFEST, "shard-00000", "shard-00001"}
    assert leftovers == {"shard-00002"}  # a whole shard the manifest never named
    with imgbench.open(path, "a") as s:  # the next appender reuses the name
        s.append(images(1, seed=7)[0], label=5)
    with imgbench.open(path) as s:
        assert len(s) == 7 and same(s[6], images(1, seed=7)[0])


WRITER = textwrap.dedent(
    """
    import sys, numpy as np, imgbench
    path, mode = sys.argv[1], sys.argv[2]
    s = imgbench.open(path, mode, backend=None if mode == "a" else "lmdb", images_per_shard=3)
    for i in range(10_000):
        s.append(np.full((16, 16), i % 251, np.uint8), label=i)
        if i % 4 == 3:
            s.flush()
            print(i + 1, flush=True)
    """
)


@pytest.mark.parametrize("mode", ["w", "a"])
def test_writer_killed_leaves_old_or_flushed(tmp_path, mode):
    path = tmp_path / "ds"
    make(path, n=7, per=5)
    old = snapshot(path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode], stdout=subprocess.PIPE, text=True)
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 40:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if mode == "w":
        assert snapshot(path) == old
    else:
        with imgbench.open(path) as s:
            n = len(s)
            assert n >= 7 + committed - 4 and n >= 7 + 36
            assert snapshot(path)[1][:7] == old[1]
            assert s.labels[7:].tolist() == list(range(n - 7))
    # the next writer is not blocked by what the dead one left
    with imgbench.open(path, "w", backend="lmdb", images_per_shard=4) as s:
        s.extend(images(3))
    assert snapshot(path)[0] == 3 and siblings(path) == []


# ------------------------------------------------------------------ hostile manifests
@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m["shards"][0].update(name="../outside"), "plain name"),
        (lambda m: m["shards"][0].update(name="/etc"), "plain name"),
        (lambda m: m["shards"][0].update(name="a/b"), "plain name"),
        (lambda m: m["shards"][0].update(name=".hidden"), "plain name"),
        (lambda m: m["shards"][0].update(name=sharded.MANIFEST), "plain name"),
        (lambda m: m["shards"][1].update(name=m["shards"][0]["name"]), "twice"),
        (lambda m: m["shards"][0].update(count=-1), "invalid image count"),
        (lambda m: m["shards"][0].update(count=True), "invalid image count"),
        (lambda m: m["shards"][0].update(count=2**62), "invalid image count"),
        (lambda m: m.update(count=m["count"] + 1), "add up"),
        (lambda m: m["shards"][0].update(checksums="zz"), "checksum summary"),
        (lambda m: m.update(backend="nosuch"), "unknown shard backend"),
        (lambda m: m.update(compression="gzip"), "compression"),
        (lambda m: m.update(format="other"), "not an imgbench"),
        (lambda m: m.update(shards={}), "list of shards"),
        (lambda m: m.update(attrs=[]), "attrs"),
    ],
)
def test_hostile_manifest_is_corrupt_store_error(tmp_path, change, match):
    path = tmp_path / "ds"
    make(path)
    rewrite(path, change)
    with pytest.raises(imgbench.CorruptStoreError, match=match):
        imgbench.open(path)
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(path, "a")


def test_newer_version_is_format_version_error(tmp_path):
    path = tmp_path / "ds"
    make(path)
    rewrite(path, lambda m: m.update(version=99))
    with pytest.raises(imgbench.FormatVersionError, match="upgrade"):
        imgbench.open(path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p, m: [m["shards"][0].update(count=4), m["shards"][1].update(count=6)], "holds 5 images"),
        (lambda p, m: [m["shards"][0].update(count=2**40), m.update(count=m["count"] + 2**40 - 5)], "holds 5 images"),
        (lambda p, m: m["shards"][2].update(checksums="0" * 16), "checksums do not match"),
        (lambda p, m: m["shards"][2].update(labels="0" * 16), "labels do not match"),
        (lambda p, m: os.rename(p / "shard-00002.lmdb", p / "gone"), "missing"),
        (lambda p, m: [os.rename(p / "shard-00002.lmdb", p / "real"), os.symlink(p / "real", p / "shard-00002.lmdb")],
         "symlink"),
        (lambda p, m: [m["shards"][2].update(name="notes.txt"), (p / "notes.txt").write_text("hi")], "not a lmdb"),
    ],
)
def test_manifest_that_lies_is_found_when_the_shard_opens(tmp_path, damage, match):
    path = tmp_path / "ds"
    batch = make(path)
    rewrite(path, lambda m: damage(path, m))
    with imgbench.open(path) as s:  # opening reads the manifest only
        with pytest.raises(imgbench.CorruptStoreError, match=match):
            s.read_many()
        with pytest.raises(imgbench.CorruptStoreError, match=match):
            s.labels
        assert same(s[len(s) - 1], batch[-1]) or "holds 5" in match  # other shards still read


def test_manifest_file_oddities(tmp_path):
    path = tmp_path / "ds"
    make(path)
    target = path / sharded.MANIFEST
    target.write_text("{not json")
    with pytest.raises(imgbench.CorruptStoreError, match="not valid JSON"):
        imgbench.open(path)
    target.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(path)
    target.unlink()
    with open(target, "wb") as f:
        f.truncate(sharded.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(imgbench.CorruptStoreError, match="bytes"):
        imgbench.open(path)
    target.unlink()
    os.mkfifo(target)
    assert not sharded.detect(path)  # never opened: a FIFO would block
    target.unlink()
    (tmp_path / "elsewhere.json").write_text(json.dumps(manifest_of(path)))
    os.symlink(tmp_path / "elsewhere.json", target)
    assert not sharded.detect(path)
    with pytest.raises(imgbench.CorruptStoreError, match="regular file"):
        sharded.read_manifest(path)


def manifest_of(path):
    return {"format": sharded.FORMAT, "version": 1, "backend": "lmdb", "compression": "none", "level": None,
            "count": 0, "labels": False, "checksum": None, "attrs": {}, "shards": []}


# ------------------------------------------------------------------ building blocks
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 6), min_size=0, max_size=7), labelled=st.booleans())
def test_any_partition_reads_back_in_order(sizes, labelled):
    """write_shard + finish, for any split of N images into shards (empty ones left out)."""
    n = sum(sizes)
    batch = images(n, seed=len(sizes)) if n else np.zeros((0, 6, 7, 3), np.uint8)
    labels = np.arange(n) % 4 if labelled else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names, start = [], 0
        for k, size in enumerate(sizes):
            name = sharded.shard_name(k, "npy")
            items = [(batch[i], None if labels is None else int(labels[i])) for i in range(start, start + size)]
            if sharded.write_shard(root, name, items, backend="npy"):
                names.append(name)
            start += size
        m = sharded.finish(root, names, backend="npy")
        assert m["count"] == n and [e["count"] for e in m["shards"]] == [s for s in sizes if s]
        with imgbench.open(root) as s:
            assert len(s) == n
            if n:
                assert same(s.read_many(), batch)
                rng = np.random.default_rng(n)
                pick = rng.integers(0, n, 2 * n)
                assert same(s.read_many(pick), batch[pick])
                assert (s.labels is None) == (not labelled)
                if labelled:
                    assert s.labels.tolist() == labels.tolist()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), limit=st.integers(1, 12), kind=st.sampled_from(["images", "shards", "bytes"]))
def test_plan_covers_every_item_once_in_order(n, limit, kind):
    sizes = [(i * 7919) % 13 + 1 for i in range(n)]
    slices = sharded.plan(n, sizes, **{{"images": "images_per_shard", "shards": "shards",
                                        "bytes": "bytes_per_shard"}[kind]: limit})
    flat = [i for a, b in slices for i in range(a, b)]
    assert flat == list(range(n)) and all(b > a for a, b in slices)
    if kind == "images":
        assert all(b - a <= limit for a, b in slices)
    if kind == "shards":
        assert len(slices) == min(n, limit)
    if kind == "bytes":
        assert all(b - a == 1 or sum(sizes[a:b]) <= limit for a, b in slices)


def test_write_shard_twice_replaces_it(tmp_path):
    """A retried task writes the same shard again: one copy of each image, never two."""
    batch = images(5)
    for _ in range(2):
        assert sharded.write_shard(tmp_path, "shard-00000", ((im, 1) for im in batch), backend="npy") == 5
    sharded.finish(tmp_path, ["shard-00000"], backend="npy")
    with imgbench.open(tmp_path) as s:
        assert len(s) == 5 and same(s.read_many(), batch)
    assert sorted(os.listdir(tmp_path)) == [sharded.MANIFEST, "shard-00000"]


def test_finish_refuses_shards_that_disagree(tmp_path):
    sharded.write_shard(tmp_path, "a", [(np.zeros((2, 2), np.uint8), 1)], backend="lmdb")
    sharded.write_shard(tmp_path, "b", [(np.zeros((2, 2), np.uint8), None)], backend="lmdb")
    sharded.write_shard(tmp_path, "c", [(np.zeros((2, 2), np.uint8), 1)], backend="lmdb", compression="zstd")
    with pytest.raises(imgbench.InvalidImageError, match="labels every image or none"):
        sharded.finish(tmp_path, ["a", "b"], backend="lmdb")
    with pytest.raises(imgbench.ImgbenchError, match="every shard"):
        sharded.finish(tmp_path, ["a", "c"], backend="lmdb")
    with pytest.raises(imgbench.CorruptStoreError, match="plain name"):
        sharded.finish(tmp_path, ["../a"], backend="lmdb")
    assert not (tmp_path / sharded.MANIFEST).exists()


def test_readers_ignore_files_the_manifest_does_not_name(tmp_path):
    path = tmp_path / "ds"
    batch = make(path, "npy", n=8, per=4)
    sharded.write_shard(path, "shard-00009", [(np.ones((2, 2), np.uint8), 0)], backend="npy")
    (path / "notes.txt").write_text("hello")
    with imgbench.open(path) as s:
        assert len(s) == 8 and same(s.read_many(), batch)


def test_single_read_opens_only_the_shard_that_holds_it(tmp_path):
    """s[i] opens only the shard that holds i (no scan of the others): counted, not timed."""
    path = tmp_path / "ds"
    batch = make(path, "npy", n=30, per=3)
    names = [e["name"] for e in manifest(path)["shards"]]
    with imgbench.open(path) as s:
        looked, opened = [], []
        find = s._find_shard
        s._find_shard = lambda p, where: looked.append(Path(p).name) or find(p, where)

        class Counted(s._inner_cls):
            def __init__(self, p, *args, **kwargs):
                opened.append(Path(p).name)
                super().__init__(p, *args, **kwargs)

        s._inner_cls = Counted
        assert same(s[29], batch[29])
        assert list(s._open) == [9]
        assert looked == opened == [names[9]]


def test_pytorch_dataloader_forked_workers(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from imgbench.torch import StoreDataset

    path = tmp_path / "ds"
    batch = make(path, "lmdb", n=23, per=4)
    loader = DataLoader(StoreDataset(path), batch_size=5, num_workers=2, multiprocessing_context="fork")
    got, labels = [], []
    for images_, labels_ in loader:
        assert labels_.dtype == torch.int64
        got.extend(im.numpy() for im in images_)
        labels.extend(labels_.tolist())
    assert labels == labels_for(23).tolist() and all(same(a, b) for a, b in zip(got, batch))
