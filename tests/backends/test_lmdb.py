"""The lmdb backend: one key per image (big-endian index) in an LMDB environment, labels, digests and
attrs under reserved keys. What only lmdb promises, and what its files get when damaged or hostile.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing of the stored
values) is covered for every backend by ``tests/contract/``; this file looks inside data.mdb.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import struct
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import imgbench
from imgbench.adapters import integrity
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.core.errors import UnsupportedError
from imgbench.storage import lmdb as lmdb_backend

from .. import scripts
from ..conftest import same, sample
from ..contract.backends import lmdb_leaf_pages
from ..contract.fuzzing import CONFIGS as FUZZ_CONFIGS
from ..contract.fuzzing import FUZZ_SETTINGS, OP, check_variant, pristine_stores, running_worker
from ..contract.test_checksums import images_for, smooth, write
from ..contract.fuzzing import SHAPE_GAP_XFAIL
from . import hostile
from . import stores
from .stores import N
from .hostile import assert_refused, probe

build_store = functools.partial(stores.build_store, backend="lmdb")


# ------------------------------------------------------------------ layout: plain lmdb reads it
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


# ------------------------------------------------------------------ writing: map size, slices
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_lmdb_batch_written_in_slices_with_a_growing_map(tmp_path, monkeypatch, compression):
    """A batch larger than the encode slice and the initial map still lands whole, in one commit."""
    monkeypatch.setattr(lmdb_backend, "_ENCODE_BYTES", 10_000)
    batch = np.stack([sample((40, 40, 3), np.uint8, seed=i) for i in range(300)])  # 1.4 MB
    path = tmp_path / "slices.lmdb"
    with imgbench.open(path, "w", compression=compression, map_size=256 << 10) as s:
        s.extend(batch, labels=np.arange(300))
    with imgbench.open(path) as s:
        assert same(s.read_many(), batch) and s.labels.tolist() == list(range(300))
        assert same(s.read_many([299, 0]), batch[[299, 0]])


def test_lmdb_large_first_write_fits_a_small_initial_map(tmp_path):
    """The map is grown before the write; the store holds every image exactly."""
    images = np.stack([sample((64, 64, 3), np.uint8, seed=i) for i in range(2000)])  # ~24 MiB
    path = tmp_path / "s.lmdb"
    with imgbench.open(path, "w", map_size=1 << 20) as s:
        s.extend(images)
    with imgbench.open(path) as s:
        assert np.array_equal(s.read_many(), images)


# ------------------------------------------------------------------ reading: readahead


def _images(n: int = 700) -> np.ndarray:
    return np.stack([sample((8, 9, 3), np.uint16, seed=i) for i in range(n)])


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


# ------------------------------------------------------------------ damage
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
    path, images = build_store(tmp_path, compression)
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


def test_truncated_lmdb_is_refused_before_it_can_sigbus(tmp_path):
    path, _ = build_store(tmp_path, n=200)
    data = path / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    code = textwrap.dedent(
        f"""
        import imgbench
        try:
            with imgbench.open({str(path)!r}) as s:
                s.read_many()
        except imgbench.CorruptStoreError as exc:
            print("refused:", exc)
        """
    )
    result = scripts.run(code, timeout=60)
    assert result.returncode == 0, f"reader died (signal {-result.returncode}): {result.stderr}"
    assert "refused:" in result.stdout and "truncated" in result.stdout


# ------------------------------------------------------------------ damaged checksum storage
def _lmdb_put_main(path, key, value):
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
    images = images_for("none", "uniform")
    write(path, "lmdb", "none", images)
    key = lmdb_backend.CHECKSUMS_PREFIX + b"00000000"
    good = _lmdb_value_main(path, key)
    _lmdb_put_main(path, key, {"missing": None, "short": good[:-3], "empty": b""}[damage])
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
    write(path, "lmdb", "none", images_for("none", "uniform"))
    meta = json.loads(_lmdb_value_main(path, lmdb_backend.META_KEY))
    meta["count"] = 10**12
    _lmdb_put_main(path, lmdb_backend.META_KEY, json.dumps(meta).encode())
    tracemalloc.start()
    try:
        with pytest.raises(imgbench.CorruptStoreError, match="image 999999999999 is not stored"):  # refused at open since
            with imgbench.open(path) as s:
                s.checksums
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


# ------------------------------------------------------------------ LMDB trusts its pages (known limits, pinned)
@pytest.fixture(scope="module")
def worker():
    yield from running_worker()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return pristine_stores(tmp_path_factory)


LMDB_TRUSTS_ITS_PAGES = (
    "LMDB trusts its B-tree pages (no page checksums): damage to a page header aborts the reader "
    "(mdb.c: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_next(), SIGABRT), an enlarged node size makes it "
    "read past the mapped file (SIGBUS), and other page damage leaks lmdb.CorruptedError / "
    "lmdb.PageNotFoundError instead of CorruptStoreError (imgbench/storage/lmdb.py wraps lmdb.Error on open "
    "only, not in _get/_get_many/_get_all/_get_labels). Open untrusted LMDB stores with `imgbench verify` in a "
    "subprocess first. The explicit example flips the LEAF flag of a leaf page of the images database"
)

@pytest.mark.xfail(strict=True, reason=LMDB_TRUSTS_ITS_PAGES)
@pytest.mark.parametrize("config", [c for c in FUZZ_CONFIGS if c[0] == "lmdb"], ids=lambda c: f"{c[0]}-{c[1]}")
def test_lmdb_damaged_anywhere_reads_exact_or_raises_corrupt(worker, pristine, tmp_path, config):
    p = pristine(*config, many=600)  # the images database spans several leaf pages

    @FUZZ_SETTINGS
    @given(ops=st.lists(OP, min_size=1, max_size=3))
    @example(ops=[("lmdb-leaf-flags", 1, 0, 0x02)])
    def run(ops):
        check_variant(worker, p, tmp_path, ops, label=f"{config[0]}-{config[1]}")

    run()

CRASH_PROBE = textwrap.dedent(
    """
    import sys, imgbench
    path, how = sys.argv[1], sys.argv[2]
    try:
        with imgbench.open(path) as s:
            if how == "bulk":
                s.read_many()
            else:
                [s[i] for i in range(len(s))]
        print("read")
    except imgbench.CorruptStoreError as exc:
        print("CorruptStoreError", exc)
    except Exception as exc:
        print("leaked", type(exc).__module__ + "." + type(exc).__name__, exc)
    """
)

def run_crash_probe(path: Path, how: str) -> str:
    res = scripts.run(CRASH_PROBE, path, how, timeout=120)
    if res.returncode < 0:
        return f"killed by {signal.Signals(-res.returncode).name}: {res.stderr.strip()[-300:]}"
    return res.stdout.strip()

@pytest.fixture
def lmdb_many_pages(tmp_path) -> Path:
    """3,000 small labelled images: an images database spanning dozens of leaf pages."""
    path = tmp_path / "pages.lmdb"
    rng = np.random.default_rng(0)
    with imgbench.open(path, "w") as s:
        s.extend(rng.integers(0, 256, (3000, 6, 6), dtype=np.uint8), labels=np.arange(3000))
    return path

@pytest.mark.xfail(strict=True, reason="LMDB trusts its pages: " + LMDB_TRUSTS_ITS_PAGES.split(": ", 1)[1])
def test_lmdb_leaf_page_flag_flip_is_an_error_not_an_abort(lmdb_many_pages):
    """Reproduction: flip bit 0x02 (P_LEAF) of byte 10 (mp_flags) of a middle leaf page; read_many() aborts."""
    data = bytearray((lmdb_many_pages / "data.mdb").read_bytes())
    leaves = sorted(lmdb_leaf_pages(bytes(data)), key=lambda p: p[1])
    assert len(leaves) > 10
    page = leaves[len(leaves) // 2][0]
    data[page * 4096 + 10] ^= 0x02
    (lmdb_many_pages / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(lmdb_many_pages, "bulk")
    assert outcome.startswith("CorruptStoreError"), outcome

@pytest.mark.xfail(strict=True, reason=(
    "LMDB trusts its pages: an overflow value's node size (mn_hi) raised to 0x7fff makes LMDB hand out a "
    "value that runs 2 GiB past the end of data.mdb; copying it is SIGBUS. imgbench could bound it: the "
    "value's address and length are known (buffers=True) and the map's extent is in /proc/self/maps "
    "(_mapping_of), so a value ending past the file's size can be refused before it is touched"))
def test_lmdb_value_size_past_the_file_is_an_error_not_sigbus(tmp_path):
    """Reproduction: 40 zstd images of 40x40x40x3 (values ~5 KB, overflow pages); set mn_hi of the 2nd node."""
    path = tmp_path / "big.lmdb"
    rng = np.random.default_rng(0)
    with imgbench.open(path, "w", compression="zstd") as s:
        s.extend(rng.integers(0, 256, (40, 40, 40, 3), dtype=np.uint8), labels=np.arange(40))
    data = bytearray((path / "data.mdb").read_bytes())
    page = lmdb_leaf_pages(bytes(data))[0][0]
    ptr = struct.unpack_from("<H", data, page * 4096 + 16 + 2)[0]  # second node
    struct.pack_into("<H", data, page * 4096 + ptr + 2, 0x7FFF)
    (path / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(path, "single")
    assert outcome.startswith("CorruptStoreError"), outcome

def test_lmdb_page_errors_are_corrupt_store_errors(lmdb_many_pages):
    data = bytearray((lmdb_many_pages / "data.mdb").read_bytes())
    for page, _key in lmdb_leaf_pages(bytes(data)):
        data[page * 4096 + 10] ^= 0x02  # every leaf of the images database: no cursor walk reaches a sibling
    (lmdb_many_pages / "data.mdb").write_bytes(bytes(data))
    outcome = run_crash_probe(lmdb_many_pages, "single")
    assert outcome.startswith("CorruptStoreError"), outcome


# ------------------------------------------------------------------ hostile stores (see hostile.py)
def _lmdb_value(path: Path, index: int, value: bytes | None = None) -> bytes:
    import lmdb

    env = lmdb.open(str(path), max_dbs=4)
    try:
        db = env.open_db(b"images")
        with env.begin(write=value is not None) as txn:
            key = struct.pack(">Q", index)
            old = bytes(txn.get(key, db=db))
            if value is not None:
                txn.put(key, value, db=db)
    finally:
        env.close()
    return old

def _lmdb_meta(path: Path, edit) -> None:
    import lmdb

    env = lmdb.open(str(path), max_dbs=4)
    try:
        with env.begin(write=True) as txn:
            meta = json.loads(bytes(txn.get(b"~imgbench/meta")))
            edit(meta)
            txn.put(b"~imgbench/meta", json.dumps(meta).encode())
    finally:
        env.close()

LMDB_HEADER = struct.Struct("<2sBBBBH3I")  # magic, version, codec id, dtype id, ndim, reserved, H, W, C

def _lmdb_png_bomb(tmp_path: Path) -> Path:
    path = hostile.build(tmp_path, "lmdb", "png")
    old = _lmdb_value(path, 0)
    header = bytearray(old[: LMDB_HEADER.size])
    struct.pack_into("<3I", header, 8, *hostile.HUGE_PNG, 3)
    _lmdb_value(path, 0, bytes(header) + hostile.lying_png(*hostile.HUGE_PNG))
    return path


def test_png_declaring_a_huge_image_is_refused_without_allocating(tmp_path):
    path = _lmdb_png_bomb(tmp_path)
    assert_refused(probe(path, "one:0"))
    assert_refused(probe(path, "bulk"))


def test_lmdb_zstd_frame_larger_than_its_image_is_refused(tmp_path):
    """Header says 16x16x3, the frame really decodes to 256 MiB of zeros from ~8 KiB."""
    path = hostile.build(tmp_path, "lmdb", "zstd")
    old = _lmdb_value(path, 2)
    _lmdb_value(path, 2, old[: LMDB_HEADER.size] + hostile.zstd_rle(256 << 20))
    assert_refused(probe(path, "one:2"))
    assert_refused(probe(path, "bulk"))

def test_lmdb_zstd_header_and_frame_both_lying_are_refused(tmp_path):
    path = hostile.build(tmp_path, "lmdb", "zstd")
    old = _lmdb_value(path, 2)
    h, w, c = 1 << 20, 1 << 20, 4  # uint8: 2**42 bytes declared
    header = bytearray(old[: LMDB_HEADER.size])
    struct.pack_into("<3I", header, 8, h, w, c)
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", h * w * c) + b"\x01\x00\x00"
    _lmdb_value(path, 2, bytes(header) + frame)
    assert_refused(probe(path, "one:2"))

def test_lmdb_meta_claiming_a_huge_uniform_shape_is_refused(tmp_path):
    path = hostile.build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform={"shape": [100_000, 100_000, 4], "dtype": "<u2"}))
    assert_refused(probe(path, "bulk"))

@pytest.mark.parametrize("uniform", [{"shape": [16, 16, 3], "dtype": "|O"}, {"shape": [16, 16, 9], "dtype": "|u1"},
                                     {"shape": "x", "dtype": "|u1"}, {"shape": [16, 16, 3], "dtype": "<f8"}])
def test_lmdb_meta_with_a_foreign_uniform_entry_is_refused(tmp_path, uniform):
    path = hostile.build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform=uniform))
    assert_refused(probe(path, "all"))

@pytest.mark.parametrize("count", [N + 1, 10**12, -1, "6"])
def test_lmdb_meta_with_a_lying_count_is_refused(tmp_path, count):
    path = hostile.build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(count=count))
    assert_refused(probe(path, "all"))

@pytest.mark.parametrize("count", [10**9, 2**62])
def test_lmdb_lying_count_is_refused_before_labels_loop_over_it(tmp_path, count):
    """Found from outside the repo: labels looped over 10**12 label keys (minutes, GBs) before noticing."""
    path = hostile.build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(count=count))
    assert_refused(probe(path, "labels", timeout=30))

@pytest.mark.parametrize("shape", [[100_000, 100_000, 3], [48, 16]], ids=["huge", "same-bytes"])
def test_lmdb_uniform_shape_that_disagrees_with_the_images_is_refused_at_open(tmp_path, shape, capsys):
    """Found from outside the repo: s[i] read fine, read_many failed, and `imgbench verify` said ok."""
    path = hostile.build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform={"shape": shape, "dtype": "|u1"}))
    assert_refused(probe(path, "one:0"))
    assert not integrity.verify(path).ok

def test_lmdb_lock_file_symlinked_outside_is_never_written(tmp_path):
    path = hostile.build(tmp_path, "lmdb")
    victim = hostile.outside_dir(tmp_path) / "precious.txt"
    victim.write_text("precious\n")
    lock = path / "lock.mdb"
    if lock.exists() or lock.is_symlink():
        lock.unlink()
    lock.symlink_to(victim)
    watch = hostile.Watch(victim)
    res = probe(path, "all")
    touched = watch.events()
    assert victim.read_text() == "precious\n", "reading the store overwrote a file outside it"
    assert res["outcome"] == "error" and res["corrupt"], hostile.describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


@pytest.mark.parametrize("case", [c for c in hostile.SYMLINK_BUGS if c.startswith("lmdb")])
def test_store_files_symlinked_outside_the_store_are_not_followed(tmp_path, case):
    hostile.assert_not_followed(*hostile.symlinked(tmp_path, case))


def test_special_files_that_are_already_refused(tmp_path):
    """Regression guard: a FIFO as data.mdb is not detected as LMDB ("no backend recognises it")."""
    path = hostile.build(tmp_path, "lmdb")
    (path / "data.mdb").unlink()
    os.mkfifo(path / "data.mdb")
    assert_refused(probe(path, "all", timeout=20))


# ------------------------------------------------------------------ a gap the fuzz found, pinned


@SHAPE_GAP_XFAIL
def test_shape_that_loses_its_trailing_1_is_found_with_verify(tmp_path):
    """The value header's ndim 3 -> 2 (one bit): (5, 6, 1) would read as (5, 6) with the same bytes."""
    path = tmp_path / "s.lmdb"
    images = [np.zeros((12, 10, 3), np.uint8), np.arange(30, dtype=np.uint8).reshape(5, 6, 1)]
    with imgbench.open(path, "w") as s:
        s.extend(images, labels=[1, 2])
    key = struct.pack(">Q", 1)
    value = bytearray(_lmdb_get(path, key))
    assert struct.unpack_from("<2sBBBBH3I", value)[4] == 3  # ndim
    value[5] ^= 1
    _lmdb_put(path, key, bytes(value))
    with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError):
        s[1]
