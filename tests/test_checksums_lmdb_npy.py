"""Per-image checksums on the lmdb and npy backends: stored with the images, read lazily,
and a single flipped bit inside one image's stored bytes is found, on every codec.

The bit is flipped in the store's own file (``data.mdb``, ``data.bin``) at an
offset taken from the documented layout, so nothing but the payload changes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import lmdb
import numpy as np
import pytest

import imgbench
from imgbench.adapters import integrity
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.storage import lmdb as lmdb_backend
from imgbench.storage import npy, registry

from .conftest import same, sample

CONFIGS = [("lmdb", "none"), ("lmdb", "png"), ("lmdb", "zstd"), ("npy", "none")]
IDS = [f"{b}-{c}" for b, c in CONFIGS]
DAMAGED = 3


def smooth(shape, dtype, seed):
    """Photo-like enough that png/zstd really compress (a bit flip then lands in coded data)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    ramp = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64) * 3
    if len(shape) == 3:
        ramp = ramp[..., None] + np.arange(shape[2]) * 17
    top = np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 1000.0
    noisy = (ramp + rng.integers(0, 4, shape)) % (min(top, 250) if dtype == np.uint8 else top)
    return noisy.astype(dtype)


def images_for(backend, compression, layout):
    if layout == "uniform":
        return np.stack([smooth((24, 20, 3), np.uint8, i) for i in range(6)])
    images = [
        smooth((24, 20, 3), np.uint8, 0),
        smooth((30, 31), np.uint16, 1),
        smooth((12, 9, 4), np.uint8, 2),
        smooth((40, 48, 3), np.uint8, 3),  # > half an LMDB page: an overflow value
        smooth((5, 7, 1), np.uint16, 4),
    ]
    if compression == "none":
        images.append(sample((6, 5, 2), np.float32, 5))
        images.append(sample((8, 3), np.int16, 6))
    return images


def path_for(tmp_path, backend, name="s"):
    return tmp_path / (f"{name}.lmdb" if backend == "lmdb" else name)


def write(path, backend, compression, images, labels=True):
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=list(range(len(images))) if labels else None)


def _lmdb_value(path, index) -> bytes:
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
    try:
        db = env.open_db(b"images", create=False)
        with env.begin() as txn:
            return bytes(txn.get(struct.pack(">Q", index), db=db))
    finally:
        env.close()


def payload_offset(path, backend, compression, index) -> int:
    """File offset of a byte inside image ``index``'s coded pixel data, from the layout."""
    if backend == "npy":
        row = np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)[index]
        h, w, c = int(row["h"]), int(row["w"]), int(row["c"]) or 1
        nbytes = h * w * c * {1: 1, 2: 2, 3: 2, 4: 4}[int(row["dtype"])]
        return int(row["offset"]) + nbytes // 2
    value = _lmdb_value(path, index)
    payload = value[lmdb_backend.HEADER.size :]
    if compression == "png":
        # Inside the first IDAT chunk's deflate data.
        at = payload.index(b"IDAT")
        (length,) = struct.unpack(">I", payload[at - 4 : at])
        inside = at + 4 + length // 2
    else:
        # none: the raw pixels; zstd: the middle of the frame (past its header, before its checksum).
        inside = len(payload) // 2
    data = (path / "data.mdb").read_bytes()
    at = data.find(value)
    assert at >= 0 and data.find(value, at + 1) == -1, "the value must occur exactly once in data.mdb"
    return at + lmdb_backend.HEADER.size + inside


def flip_bit(path, backend, compression, index) -> None:
    target = path / ("data.mdb" if backend == "lmdb" else npy.DATA)
    offset = payload_offset(path, backend, compression, index)
    with open(target, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


# ------------------------------------------------------------------ a flipped bit
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
@pytest.mark.parametrize("backend,compression", CONFIGS, ids=IDS)
def test_flipped_bit_in_one_image_is_found(tmp_path, backend, compression, layout, capsys):
    path = path_for(tmp_path, backend)
    images = images_for(backend, compression, layout)
    write(path, backend, compression, images)
    n = len(images)
    flip_bit(path, backend, compression, DAMAGED)
    others = [i for i in range(n) if i != DAMAGED]

    # (a) verify=True: the damaged image raises naming its index, the others read fine.
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
            s[DAMAGED]
        for i in others:
            assert same(s[i], images[i]), i
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
            s.read_many()
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
            s.read_many([0, DAMAGED])
        got = s.read_many(others)
        assert all(same(g, images[i]) for g, i in zip(got, others))
        assert s.labels.tolist() == list(range(n))

    # (b) imgbench verify reports exactly that image and exits 1.
    report = integrity.verify(path)
    assert report.checksummed and report.images == n
    assert sorted(report.damaged) == [DAMAGED] and report.problems == [] and not report.ok
    assert main(["verify", "-q", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged image {DAMAGED}" in out and f"1 of {n} images damaged" in out

    # (c) raw data has no check of its own: without verify the wrong pixels come back.
    with imgbench.open(path) as s:
        if compression == "none":
            wrong = s[DAMAGED]
            assert wrong.shape == images[DAMAGED].shape and wrong.dtype == images[DAMAGED].dtype
            assert not same(wrong, images[DAMAGED])
            assert checksum.digests([images[DAMAGED]], [DAMAGED])[0] == s.checksums[DAMAGED]
            assert checksum.digests([wrong], [DAMAGED])[0] != s.checksums[DAMAGED]
            everything = s.read_many()
            assert not same(everything[DAMAGED], images[DAMAGED])
        else:
            # png (CRC) and zstd (frame checksum) detect it themselves, naming the image.
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
                s[DAMAGED]
        for i in others:
            assert same(s[i], images[i])


@pytest.mark.parametrize("backend", ["lmdb", "npy"])
def test_cli_verify_process_exit_code(tmp_path, backend):
    path = path_for(tmp_path, backend)
    images = images_for(backend, "none", "uniform")
    write(path, backend, "none", images)
    run = [sys.executable, "-m", "imgbench.cli", "verify", "-q", str(path)]
    assert subprocess.run(run, capture_output=True, text=True, timeout=120).returncode == 0
    flip_bit(path, backend, "none", DAMAGED)
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"damaged image {DAMAGED}" in result.stdout and "Traceback" not in result.stderr


# ------------------------------------------------------------------ what is stored
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
@pytest.mark.parametrize("backend,compression", CONFIGS, ids=IDS)
def test_checksums_are_the_digests_of_the_images(tmp_path, backend, compression, layout):
    path = path_for(tmp_path, backend)
    images = images_for(backend, compression, layout)
    write(path, backend, compression, images)
    labels = list(range(len(images)))  # what write() stored: the digests' seeds
    with imgbench.open(path) as s:
        sums = s.checksums
        assert sums.dtype == np.uint64 and np.array_equal(sums, checksum.digests(images, labels))
        sums[0] ^= 1  # a copy: the store's own stays intact
        assert np.array_equal(s.checksums, checksum.digests(images, labels))
    with imgbench.open(path, verify=True) as s:
        assert all(same(s[i], im) for i, im in enumerate(images))
        assert all(same(a, b) for a, b in zip(s.read_many(), images))
    assert integrity.verify(path).ok
    # The metadata names the algorithm, as the layout says.
    if backend == "npy":
        meta = json.loads((path / npy.COMMIT).read_text())
    else:
        env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
        with env.begin() as txn:
            meta = json.loads(txn.get(lmdb_backend.META_KEY))
            raw = txn.get(lmdb_backend.CHECKSUMS_PREFIX + b"00000000")
        env.close()
        assert np.frombuffer(raw, "<u8").tolist() == checksum.digests(images, labels).tolist()
    assert meta["checksum"] == "xxh3_64"


@pytest.mark.parametrize("backend,compression", CONFIGS, ids=IDS)
def test_checksums_survive_append(tmp_path, backend, compression):
    path = path_for(tmp_path, backend)
    first = images_for(backend, compression, "ragged")
    write(path, backend, compression, first, labels=False)
    second = [smooth((24, 20, 3), np.uint8, 50), smooth((11, 13), np.uint16, 51)]
    batch = np.stack([smooth((9, 9), np.uint8, 60 + i) for i in range(3)])
    with imgbench.open(path, "a") as s:
        s.extend(second)
        s.flush()
        s.extend(batch)
        s.append(smooth((4, 4, 3), np.uint8, 70))
    everything = [*first, *second, *batch, smooth((4, 4, 3), np.uint8, 70)]
    with imgbench.open(path, verify=True) as s:
        assert len(s) == len(everything)
        assert np.array_equal(s.checksums, checksum.digests(everything))
        assert all(same(s[i], im) for i, im in enumerate(everything))
    report = integrity.verify(path)
    assert report.ok and report.checksummed and report.images == len(everything)


@pytest.mark.parametrize("backend", ["lmdb", "npy"])
def test_checksums_are_loaded_lazily(tmp_path, backend, monkeypatch):
    path = path_for(tmp_path, backend)
    images = images_for(backend, "none", "uniform")
    write(path, backend, "none", images)
    cls = registry.get(backend)
    calls = []
    real = cls._get_checksums
    monkeypatch.setattr(cls, "_get_checksums", lambda self: calls.append(1) or real(self))
    with imgbench.open(path) as s:
        s[0], s.read_many([2, 1]), s.read_many(), s.labels
        assert calls == []
    with imgbench.open(path, verify=True) as s:
        s[0], s[1], s.read_many()
        assert calls == [1], "read once per open store, then cached"


def test_lmdb_checksum_chunks_across_appends(tmp_path, monkeypatch):
    """Chunks of LABEL_CHUNK digests, the last one extended by each append (small chunks here)."""
    monkeypatch.setattr(lmdb_backend, "LABEL_CHUNK", 4)
    path = tmp_path / "c.lmdb"
    images = [smooth((5, 6), np.uint8, i) for i in range(23)]
    with imgbench.open(path, "w") as s:
        s.extend(np.stack(images[:6]), labels=range(6))
    for lo, hi in ((6, 7), (7, 13), (13, 23)):
        with imgbench.open(path, "a") as s:
            s.extend(images[lo:hi], labels=range(lo, hi))
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
    with env.begin() as txn:
        chunks = [txn.get(lmdb_backend.CHECKSUMS_PREFIX + b"%08d" % c) for c in range(7)]
    env.close()
    assert [len(c) // 8 if c else 0 for c in chunks] == [4, 4, 4, 4, 4, 3, 0]
    assert np.frombuffer(b"".join(chunks[:6]), "<u8").tolist() == checksum.digests(images, range(23)).tolist()
    with imgbench.open(path, verify=True) as s:
        assert s.labels.tolist() == list(range(23))
        assert np.array_equal(s.checksums, checksum.digests(images, range(23)))
        assert same(s.read_many(), np.stack(images))


# ------------------------------------------------------------------ stores without checksums
@pytest.mark.parametrize("backend", ["lmdb", "npy"])
def test_store_written_without_checksums_opens_and_appends_without(tmp_path, backend, monkeypatch):
    path = path_for(tmp_path, backend)
    images = images_for(backend, "none", "ragged")
    cls = registry.get(backend)
    with monkeypatch.context() as m:
        m.setattr(cls, "stores_checksums", False)  # as written before checksums existed
        write(path, backend, "none", images[:3])
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and all(same(s[i], images[i]) for i in range(3))
    report = integrity.verify(path)
    assert report.ok and not report.checksummed
    with imgbench.open(path, "a") as s:
        s.extend(images[3:], labels=range(3, len(images)))
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None
        assert all(same(s[i], im) for i, im in enumerate(images))
    if backend == "npy":
        assert "checksum" not in json.loads((path / npy.COMMIT).read_text())
        assert np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)["checksum"].tolist() == [0] * len(images)
    else:
        env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
        with env.begin() as txn:
            assert "checksum" not in json.loads(txn.get(lmdb_backend.META_KEY))
            assert txn.get(lmdb_backend.CHECKSUMS_PREFIX + b"00000000") is None
        env.close()


# ------------------------------------------------------------------ damaged checksum storage
def _lmdb_put(path, key, value):
    env = lmdb.open(str(path), max_dbs=2)
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key)
        else:
            txn.put(key, value)
    env.close()


@pytest.mark.parametrize("damage", ["missing", "short", "empty"])
def test_lmdb_missing_or_short_checksums(tmp_path, damage):
    path = tmp_path / "s.lmdb"
    images = images_for("lmdb", "none", "uniform")
    write(path, "lmdb", "none", images)
    key = lmdb_backend.CHECKSUMS_PREFIX + b"00000000"
    good = _lmdb_value_main(path, key)
    _lmdb_put(path, key, {"missing": None, "short": good[:-3], "empty": b""}[damage])
    with imgbench.open(path) as s:
        assert same(s.read_many(), images)  # verify=False: the checksums are never read
        with pytest.raises(imgbench.CorruptStoreError, match="checksums"):
            s.checksums
    with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError, match="checksums"):
        s[0]
    report = integrity.verify(path)
    assert not report.ok and report.problems and "checksums" in report.problems[0]
    assert report.damaged == {}  # the images themselves still read
    assert main(["verify", "-q", str(path)]) == 1


def _lmdb_value_main(path, key) -> bytes:
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
    with env.begin() as txn:
        value = bytes(txn.get(key))
    env.close()
    return value


def test_lmdb_count_beyond_the_stored_images_is_refused_before_allocating(tmp_path):
    import tracemalloc

    path = tmp_path / "s.lmdb"
    write(path, "lmdb", "none", images_for("lmdb", "none", "uniform"))
    meta = json.loads(_lmdb_value_main(path, lmdb_backend.META_KEY))
    meta["count"] = 10**12
    _lmdb_put(path, lmdb_backend.META_KEY, json.dumps(meta).encode())
    tracemalloc.start()
    try:
        with pytest.raises(imgbench.CorruptStoreError, match="image 999999999999 is not stored"):  # refused at open since
            with imgbench.open(path) as s:
                s.checksums
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("layout", ["uniform", "ragged"])
def test_npy_short_index_is_refused(tmp_path, layout):
    path = tmp_path / "s"
    images = images_for("npy", "none", layout)
    write(path, "npy", "none", images)
    index = path / npy.INDEX
    full = index.read_bytes()
    # Truncated while a reader has it open: the lazy checksum read notices.
    with imgbench.open(path) as s:
        index.write_bytes(full[: len(full) - 10])
        if layout == "uniform":
            with pytest.raises(imgbench.CorruptStoreError):
                s.checksums
        else:  # a ragged reader validated and holds the whole index from the open
            assert np.array_equal(s.checksums, checksum.digests(images, range(len(images))))
    # Short before opening: refused at open, before anything is mapped.
    with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        imgbench.open(path)
    assert integrity.verify(path).problems


def test_npy_checksum_column_damage_is_a_damaged_image(tmp_path):
    """A flipped bit in a stored digest: the image is reported, never silently passed."""
    path = tmp_path / "s"
    images = images_for("npy", "none", "uniform")
    write(path, "npy", "none", images)
    rows = np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)
    rows[1]["checksum"] ^= np.uint64(1 << 40)
    rows.tofile(path / npy.INDEX)
    report = integrity.verify(path)
    assert sorted(report.damaged) == [1]
