"""The tar backend (WebDataset shards): webdataset compatibility, shard rollover, append-only shards, the index
and its digests, damaged and hostile stores.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing) is covered for
every backend by ``tests/contract/``; this file looks inside the shards and the index.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import xxhash

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.core import checksum
from imgbench.storage.tar import CHECKSUM, COMMIT, INDEX, INDEX_COLUMNS, member_header

from .. import scripts
from ..conftest import same, sample
from ..contract.fuzzing import store_images
from . import hostile
from .stores import read_everything
from .hostile import assert_refused, probe

wds = pytest.importorskip("webdataset")

SHAPE = (16, 16, 3)
NCOL = len(INDEX_COLUMNS)  # int64 per index row
ROW = 8 * NCOL


def images(n: int, start: int = 0, dtype=np.uint8) -> np.ndarray:
    return np.stack([sample(SHAPE, dtype, seed=start + i) for i in range(n)])


def build(path, n=10, compression="none", labels=True, **options) -> np.ndarray:
    batch = images(n)
    with imgbench.open(path, "w", backend="tar", compression=compression, **options) as s:
        s.extend(batch, labels=np.arange(n) * 3 - 5 if labels else None)
    return batch


def shards(path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".tar"))


def commit(path) -> dict:
    return json.loads((path / COMMIT).read_text())


def set_commit(path, meta: dict) -> None:
    (path / COMMIT).write_text(json.dumps(meta))


def npy_len(image: np.ndarray) -> int:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, image, allow_pickle=False)
    return len(buf.getvalue())


def block(n: int) -> int:
    return -(-n // 512) * 512


# ------------------------------------------------------------------ interoperability
@pytest.mark.parametrize("compression", ["png", "none"])
def test_webdataset_streams_every_sample_in_order(tmp_path, compression):
    path = tmp_path / "wds"
    batch = build(path, n=23, compression=compression, shard_bytes=20_000)
    names = shards(path)
    assert len(names) > 2 and names == [s["name"] for s in commit(path)["shards"]]
    urls = [str(path / name) for name in names]
    spec = "rgb8" if compression == "png" else None
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    ds = ds.decode(spec) if spec else ds.decode()
    ext = "png" if compression == "png" else "npy"
    got = list(ds)
    assert [s["__key__"] for s in got] == [f"{i:08d}" for i in range(23)]
    for i, s in enumerate(got):
        assert np.array_equal(s[ext], batch[i]) and s[ext].dtype == np.uint8
        assert s["cls"] == i * 3 - 5


def test_webdataset_exact_16_bit_with_a_custom_decoder(tmp_path):
    import imagecodecs

    batch = np.stack([sample((9, 7), np.uint16, seed=i) for i in range(5)])
    path = tmp_path / "u16"
    with imgbench.open(path, "w", backend="tar") as s:
        s.extend(batch)
    ds = wds.WebDataset([str(path / n) for n in shards(path)], shardshuffle=False, empty_check=False)
    got = list(ds.decode(wds.handle_extension("png", imagecodecs.png_decode)))
    assert len(got) == 5 and "cls" not in got[0]
    assert all(same(s["png"], batch[i]) for i, s in enumerate(got))


def test_tar_listing_is_plain_members_only(tmp_path):
    path = tmp_path / "t"
    build(path, n=4, compression="png", shard_bytes=1)  # one sample per shard
    assert shards(path) == [f"shard-{k:06d}.tar" for k in range(4)]
    umask = os.umask(0)
    os.umask(umask)
    for name in [*shards(path), INDEX]:
        assert (path / name).stat().st_mode & 0o777 == 0o666 & ~umask, "data files get ordinary permissions"
    seen = []
    for name in shards(path):
        with tarfile.open(path / name) as tf:
            for m in tf.getmembers():
                assert m.isreg() and not m.name.startswith("/") and "/" not in m.name and ".." not in m.name
                assert m.mode == 0o644 and m.mtime == 0
                seen.append(m.name)
    assert seen == [f"{i:08d}.{ext}" for i in range(4) for ext in ("png", "cls")]
    # Our header builder writes exactly what tarfile writes.
    info = tarfile.TarInfo("00000042.png")
    info.size, info.mode, info.mtime, info.uname, info.gname = 1234, 0o644, 0, "", ""
    assert member_header(b"00000042.png", 1234) == info.tobuf(format=tarfile.USTAR_FORMAT)


def test_index_readable_without_imgbench(tmp_path):
    path = tmp_path / "plain"
    batch = build(path, n=6, shard_bytes=8000)
    meta = commit(path)
    rows = np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)[: meta["count"]]
    assert meta["index"]["columns"][:3] == ["shard", "offset", "size"]
    assert meta["index"]["columns"][-1] == "checksum" and meta["checksum"] == "xxh3_64"
    digests = rows[:, -1].view("<u8").tolist()
    for i, (k, offset, size, label, h, w, c, _dt, _sum) in enumerate(rows.tolist()):
        with open(path / meta["shards"][k]["name"], "rb") as f:
            f.seek(offset)
            image = np.load(io.BytesIO(f.read(size)), allow_pickle=False)
        assert same(image, batch[i]) and (h, w, c) == SHAPE and label == i * 3 - 5
        # plain xxhash checks every image and its label (seed: the label as unsigned 64-bit; some are negative)
        assert digests[i] == xxhash.xxh3_64_intdigest(image.tobytes(), seed=label & 0xFFFFFFFFFFFFFFFF)


# ------------------------------------------------------------------ shards
def test_shards_roll_over_at_shard_bytes(tmp_path):
    one = images(1)[0]
    sample_bytes = 512 + block(npy_len(one)) + 1024  # image member + .cls member
    cap = 1024 + 3 * sample_bytes  # exactly three samples and the end-of-archive blocks
    path = tmp_path / "roll"
    batch = build(path, n=10, shard_bytes=cap)
    sizes = [(path / n).stat().st_size for n in shards(path)]
    assert sizes == [cap, cap, cap, 1024 + sample_bytes]
    assert [s["samples"] for s in commit(path)["shards"]] == [3, 3, 3, 1]
    # one byte less: two per shard
    build(path, n=10, shard_bytes=cap - 1)
    assert len(shards(path)) == 5
    # a sample bigger than the cap gets a shard of its own
    build(path, n=3, shard_bytes=100)
    assert len(shards(path)) == 3
    with imgbench.open(path) as s:
        assert same(s.read_many(), batch[:3])


def test_rollover_is_the_same_for_appends_and_batches(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(a, n=9, compression="png", shard_bytes=5000)
    with imgbench.open(b, "w", backend="tar", compression="png", shard_bytes=5000) as s:
        for i, im in enumerate(images(9)):
            s.append(im, label=i * 3 - 5)
    assert [(a / n).read_bytes() for n in shards(a)] == [(b / n).read_bytes() for n in shards(b)]


def test_append_writes_new_shards_and_never_touches_old_ones(tmp_path):
    path = tmp_path / "app"
    batch = build(path, n=4, shard_bytes=1 << 20)  # one shard, well under the cap
    before = {n: (path / n).read_bytes() for n in shards(path)}
    index_before = (path / INDEX).read_bytes()
    extra = images(5, start=100)
    with imgbench.open(path, "a") as s:
        s.extend(extra[:2], labels=[7, 8])
        s.flush()
        s.extend(extra[2:], labels=[9, 10, 11])
    names = shards(path)
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]  # one per flush
    assert {n: (path / n).read_bytes() for n in before} == before
    assert (path / INDEX).read_bytes()[: len(index_before)] == index_before
    with imgbench.open(path) as s:
        assert same(s.read_many(), np.concatenate([batch, extra]))
        assert s.labels.tolist() == [-5, -2, 1, 4, 7, 8, 9, 10, 11]
    ds = wds.WebDataset([str(path / n) for n in names], shardshuffle=False, empty_check=False).decode()
    assert [s["__key__"] for s in ds] == [f"{i:08d}" for i in range(9)]


KILLED_APPENDER = textwrap.dedent(
    """
    import os, sys, numpy as np, imgbench, imgbench.core.atomic
    s = imgbench.open(sys.argv[1], "a")
    s.extend(np.full((6, 16, 16, 3), 9, np.uint8), labels=np.zeros(6, int))
    imgbench.core.atomic.write_file = lambda *a, **k: os._exit(0)  # killed just before the commit record
    s.close()
    """
)


def test_uncommitted_shards_of_a_dead_appender_are_ignored_then_replaced(tmp_path):
    path = tmp_path / "dead"
    batch = build(path, n=4, shard_bytes=4000)
    committed = shards(path)
    before = {n: (path / n).read_bytes() for n in committed}
    scripts.run(KILLED_APPENDER, path, check=True, timeout=120)
    assert len(shards(path)) > len(committed), "the dead appender left shards behind"
    assert os.path.getsize(path / INDEX) > 4 * ROW, "and index rows"
    with imgbench.open(path) as s:
        assert len(s) == 4 and same(s.read_many(), batch)
    extra = images(1, start=50)
    with imgbench.open(path, "a") as s:
        s.append(extra[0], label=1)
    assert {n: (path / n).read_bytes() for n in committed} == before
    assert len(shards(path)) == len(committed) + 1, "leftovers were removed or overwritten"
    assert os.path.getsize(path / INDEX) == 5 * ROW
    with imgbench.open(path) as s:
        assert same(s.read_many(), np.concatenate([batch, extra]))
    ds = wds.WebDataset([str(path / n) for n in shards(path)], shardshuffle=False, empty_check=False).decode()
    assert len(list(ds)) == 5


def test_aborted_append_removes_its_shards(tmp_path):
    path = tmp_path / "abort"
    build(path, n=3)
    names = shards(path)
    with pytest.raises(RuntimeError):
        with imgbench.open(path, "a") as s:
            s.extend(images(3, start=9), labels=[1, 2, 3])
            raise RuntimeError("boom")
    assert shards(path) == names and os.path.getsize(path / INDEX) == 3 * ROW


def test_bulk_reads_match_single_reads(tmp_path):
    path = tmp_path / "bulk"
    batch = build(path, n=40, compression="png", shard_bytes=9000)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 40, 60)  # unsorted, with repeats, across shards
    with imgbench.open(path, threads=3) as s:
        assert len(commit(path)["shards"]) > 3
        assert same(s.read_many(idx), batch[idx])
        assert same(s.read_many(), batch)
        assert same(s[::-7], batch[::-7])
    mixed = [sample((5, 6), np.uint16, seed=1), sample((3, 3, 4), np.float32, seed=2), sample((5, 6), np.uint16)]
    with imgbench.open(tmp_path / "mixed", "w", backend="tar", compression="none") as s:
        s.extend(mixed)
    with imgbench.open(tmp_path / "mixed") as s:
        back = s.read_many([2, 1, 0, 1])
        assert isinstance(back, list) and same(back[0], mixed[2]) and same(back[1], mixed[1])
        pair = s.read_many([0, 2])
        assert isinstance(pair, np.ndarray) and same(pair[1], mixed[2])


def test_bad_options(tmp_path):
    for bad in (0, -1, 1.5, True, "1M"):
        with pytest.raises(imgbench.UnsupportedError, match="shard_bytes"):
            imgbench.open(tmp_path / "o", "w", backend="tar", shard_bytes=bad)
    with pytest.raises(imgbench.UnsupportedError, match="unknown option.*shard_size"):
        imgbench.open(tmp_path / "o", "w", backend="tar", shard_size=10)


# ------------------------------------------------------------------ hostile stores
def rewrite_index(path, fn) -> None:
    rows = np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)
    fn(rows)
    rows.astype("<i8").tofile(path / INDEX)


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.__setitem__((2, 1), -512),  # negative offset
        lambda r: r.__setitem__((2, 1), 513),  # not on a tar block
        lambda r: r.__setitem__((2, 2), 2**60),  # huge size
        lambda r: r.__setitem__((2, 2), -1),
        lambda r: r.__setitem__((2, 1), 2**62),  # far past the shard's end
        lambda r: r.__setitem__((2, 0), 99),  # no such shard
        lambda r: r.__setitem__((2, 0), -1),
        lambda r: r.__setitem__((2, slice(4, 6)), 10**6),  # shape claims far more than the member holds
        lambda r: r.__setitem__((2, 6), 9),  # 9 channels
        lambda r: r.__setitem__((2, 7), 42),  # unknown dtype
    ],
)
def test_crafted_index_is_refused_without_big_allocations(tmp_path, damage):
    path = tmp_path / "evil"
    build(path, n=5)
    rewrite_index(path, damage)
    tracemalloc.start()
    try:
        with pytest.raises(imgbench.CorruptStoreError):
            read_everything(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("name", ["../outside.tar", "/etc/passwd", "sub/shard-000000.tar", "shard-0.tar", 7, ""])
def test_shard_names_that_leave_the_store_are_refused(tmp_path, name):
    path = tmp_path / "evil"
    build(path, n=3)
    outside = tmp_path / "outside.tar"
    outside.write_bytes((path / "shard-000000.tar").read_bytes())
    meta = commit(path)
    meta["shards"][0]["name"] = name
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="shard name"):
        read_everything(path)


def test_symlinked_or_special_shards_are_refused(tmp_path):
    path = tmp_path / "evil"
    build(path, n=3)
    victim = path / "shard-000000.tar"
    outside = tmp_path / "outside.tar"
    outside.write_bytes(victim.read_bytes())
    victim.unlink()
    victim.symlink_to(outside)
    with pytest.raises(imgbench.CorruptStoreError, match="symlink"):
        read_everything(path)
    victim.unlink()
    os.mkfifo(victim)  # would block a reader that opened it without O_NONBLOCK
    with pytest.raises(imgbench.CorruptStoreError, match="regular file"):
        read_everything(path)
    victim.unlink()
    os.symlink(outside, path / (COMMIT + ".x"))
    (path / COMMIT).unlink()
    os.rename(path / (COMMIT + ".x"), path / COMMIT)
    with pytest.raises(imgbench.CorruptStoreError, match="symlink"):
        imgbench.open(path)


def test_truncated_or_grown_shards_are_refused(tmp_path):
    path = tmp_path / "trunc"
    batch = build(path, n=9, shard_bytes=8000)
    last = path / shards(path)[-1]
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with imgbench.open(path) as s:
        assert same(s[0], batch[0])  # other shards still read
        with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
            s[8]
        with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
            s.read_many()
    last.write_bytes(data + b"\0" * 512)
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="modified"):
        s[8]


def test_count_larger_than_the_index_is_refused(tmp_path):
    path = tmp_path / "count"
    build(path, n=3)
    meta = commit(path)
    meta["count"] = 10**15
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        imgbench.open(path)
    meta["count"] = 3
    meta["shards"][0]["size"] = 100  # not a whole number of blocks
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="impossible size"):
        imgbench.open(path)
    meta["shards"] = "shard-000000.tar"
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="shard list"):
        imgbench.open(path)
    (path / COMMIT).write_bytes(b"{not json")
    with pytest.raises(imgbench.CorruptStoreError, match="JSON"):
        imgbench.open(path)


def test_png_bit_flip_and_npy_header_damage_are_detected(tmp_path):
    path = tmp_path / "png"
    build(path, n=4, compression="png")
    rows = np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)
    shard = path / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[rows[2, 1] + rows[2, 2] // 2] ^= 0x10  # inside IDAT: the chunk CRC catches it
    shard.write_bytes(bytes(data))
    with imgbench.open(path) as s:
        s[1]
        with pytest.raises(imgbench.CorruptStoreError, match="image 2"):
            s[2]
        with pytest.raises(imgbench.CorruptStoreError):
            s.read_many()

    path = tmp_path / "npy"
    batch = build(path, n=4, compression="none")
    shard = path / "shard-000000.tar"
    rows = np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)
    original = shard.read_bytes()
    for patch in (b"\x93NUMPY\x01\x00", b"garbage!", b"{'descr': '<f8'"):
        data = bytearray(original)
        at = rows[1, 1] + (10 if patch.startswith(b"{") else 0)
        data[at : at + len(patch)] = patch
        shard.write_bytes(bytes(data))
        with imgbench.open(path) as s:
            assert same(s[0], batch[0])
            if patch.startswith(b"\x93NUMPY\x01"):
                assert same(s[1], batch[1])  # the magic is unchanged: nothing was damaged
                continue
            with pytest.raises(imgbench.CorruptStoreError):
                s[1]
            with pytest.raises(imgbench.CorruptStoreError):
                s.read_many()


def test_damaged_npy_header_is_corrupt(tmp_path):
    path = tmp_path / "n"
    ims = store_images("none")[:8]
    with imgbench.open(path, "w", backend="tar", compression="none") as s:
        s.extend(ims)
    victim = next(path.glob("shard-*.tar"))
    data = bytearray(victim.read_bytes())
    at = data.index(b"'shape': (12, 10, 3)") + len(b"'shape': (12, 10, 3")
    assert data[at : at + 1] == b")"
    data[at] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()


# ------------------------------------------------------------------ checksums in the index
def build_checksummed(path, compression, batch) -> None:
    with imgbench.open(path, "w", backend="tar", compression=compression) as s:
        s.extend(batch, labels=np.arange(len(batch)) * 2 + 1)


def index_rows(path) -> np.ndarray:
    return np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)


def cli_verify(path) -> subprocess.CompletedProcess:
    return scripts.run_cli("verify", "-q", path, timeout=120)


@pytest.mark.parametrize("compression", ["png", "none"])
def test_missing_or_short_checksums_are_corrupt(tmp_path, compression):
    path = tmp_path / "s"
    build_checksummed(path, compression, images(5))
    good = commit(path)
    # The digests are a column of the index: an index without them is a short index, refused at open.
    data = (path / INDEX).read_bytes()
    (path / INDEX).write_bytes(data[:-8])
    with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        imgbench.open(path)
    assert cli_verify(path).returncode == 1
    (path / INDEX).write_bytes(data)
    # An index described with other columns (e.g. the 8 of a development version, no checksum) is refused.
    meta = json.loads(json.dumps(good))
    meta["index"]["columns"] = meta["index"]["columns"][:-1]
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="index columns"):
        imgbench.open(path)
    del meta["index"]
    set_commit(path, meta)
    with pytest.raises(imgbench.CorruptStoreError, match="index columns"):
        imgbench.open(path)
    set_commit(path, good)
    # A damaged digest is reported as that image's damage.
    rows = index_rows(path)
    rows[3, CHECKSUM] ^= 1
    rows.astype("<i8").tofile(path / INDEX)
    assert sorted(verify(path).damaged) == [3]
    rows[3, CHECKSUM] ^= 1
    rows.astype("<i8").tofile(path / INDEX)
    assert verify(path).ok


@pytest.mark.parametrize("compression", ["png", "none"])
def test_store_written_without_checksums_reads_and_appends_without_them(tmp_path, compression):
    """A record from before checksums (no "checksum", the column zero) opens, reads, verifies and stays so."""
    path = tmp_path / "s"
    batch = images(3)
    build_checksummed(path, compression, batch)
    meta = commit(path)
    del meta["checksum"]
    rows = index_rows(path)
    rows[:, CHECKSUM] = 0
    rows.astype("<i8").tofile(path / INDEX)
    set_commit(path, meta)
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), batch) and same(s[1], batch[1])
    report = verify(path)
    assert report.ok and not report.checksummed
    proc = cli_verify(path)
    assert proc.returncode == 0 and "no per-image checksums" in proc.stdout
    extra = images(2, start=9)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[5, 6])
    meta = commit(path)
    assert "checksum" not in meta and "image_checksums" not in meta and meta["count"] == 5
    assert not index_rows(path)[:5, CHECKSUM].any()
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), np.concatenate([batch, extra]))
    assert verify(path).ok


@pytest.mark.parametrize("compression", ["png", "none"])
def test_killed_appender_leaves_old_images_with_their_digests(tmp_path, compression):
    """Digests are committed with the images in the index: a writer killed just before its record adds neither."""
    path = tmp_path / "s"
    batch = images(4)
    build_checksummed(path, compression, batch)
    labels = (np.arange(4) * 2 + 1).tolist()
    scripts.run(KILLED_APPENDER, path, check=True, timeout=120)
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 4 and np.array_equal(s.checksums, checksum.digests(batch, labels))
        assert same(s.read_many(), batch) and s.labels.tolist() == labels
    extra = images(2, start=40)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[1, 2])
    with imgbench.open(path, verify=True) as s:
        both = np.concatenate([batch, extra])
        assert np.array_equal(s.checksums, checksum.digests(both, [*labels, 1, 2])) and same(s.read_many(), both)
        assert s.labels.tolist() == [*labels, 1, 2]
    assert verify(path).ok


# ------------------------------------------------------------------ hostile stores (see hostile.py)
def _tar_png_bomb(tmp_path: Path) -> Path:
    path = hostile.build(tmp_path, "tar", "png")
    cols = list(INDEX_COLUMNS)
    rows = np.fromfile(path / INDEX, "<i8").reshape(-1, len(cols))
    bomb = hostile.lying_png(*hostile.HUGE_PNG)
    offset, size = int(rows[0, cols.index("offset")]), int(rows[0, cols.index("size")])
    assert len(bomb) <= size
    shard = path / json.loads((path / COMMIT).read_text())["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[offset : offset + len(bomb)] = bomb
    shard.write_bytes(bytes(data))
    rows[0, cols.index("size")] = len(bomb)
    rows[0, cols.index("height")], rows[0, cols.index("width")] = hostile.HUGE_PNG
    rows.astype("<i8").tofile(path / INDEX)
    return path


def test_png_declaring_a_huge_image_is_refused_without_allocating(tmp_path):
    path = _tar_png_bomb(tmp_path)
    assert_refused(probe(path, "one:0"))
    assert_refused(probe(path, "bulk"))


def test_tar_member_renamed_outside_the_store_is_damage_when_verifying(tmp_path):
    """Readers use the index, not names; but webdataset/tar tools use names: a verified read must refuse."""
    path = hostile.build(tmp_path, "tar", "none")
    shard = next(path.glob("*.tar"))
    data = bytearray(shard.read_bytes())
    at = data.find(b"00000002.npy")
    assert at >= 0
    size = int(data[at + 124 : at + 135], 8)
    data[at : at + 512] = member_header(b"../00000002.npy", size)  # a valid header, only the name lies
    shard.write_bytes(bytes(data))
    with imgbench.open(path) as s:
        assert s[2].shape == hostile.SHAPE  # plain reads go by the index and still read the pixels
    with imgbench.open(path, verify=True) as s:
        assert s[1].shape == hostile.SHAPE
        with pytest.raises(imgbench.CorruptStoreError, match="tar members of image 2"):
            s[2]
    report = verify(path)
    assert not report.ok and list(report.damaged) == [2]
