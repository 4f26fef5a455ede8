"""The npy backend: one flat memory-mapped data file, append-only, and what a damaged index gets.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing) is covered for
every backend by ``tests/contract/``; this file checks what only npy promises.
"""

from __future__ import annotations

import json
import os
import textwrap
import tracemalloc

import numpy as np
import pytest
import xxhash

import imgbench
from imgbench.adapters import integrity
from imgbench.core import checksum
from imgbench.storage import npy, registry

from .. import scripts
from ..conftest import same, sample
from ..contract.test_checksums import images_for, write
from ..contract.fuzzing import SHAPE_GAP_XFAIL
from . import hostile
from .hostile import assert_refused, probe

RAGGED = [
    sample((7, 5), np.uint8, 0),
    sample((6, 9, 2), np.uint16, 1),
    sample((3, 4, 3), np.int16, 2),
    sample((5, 5, 4), np.float32, 3),
    sample((1, 13, 1), np.uint8, 4),
]


def build_ragged(path, labels=True):
    with imgbench.open(path, "w", backend="npy") as s:
        s.extend(RAGGED, labels=[10, 11, 12, 13, 14] if labels else None)
        s.attrs["kind"] = "ragged"
    return path


def build_uniform(path, n=20, shape=(8, 6, 3)):
    images = np.stack([sample(shape, np.uint8, seed=i) for i in range(n)])
    with imgbench.open(path, "w", backend="npy") as s:
        s.extend(images, labels=np.arange(n) * 2)
    return images


def commit(path) -> dict:
    return json.loads((path / npy.COMMIT).read_text())


def rows(path) -> np.ndarray:
    return np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)


# ------------------------------------------------------------------ layout
def test_data_file_is_exactly_the_images_and_deterministic(tmp_path):
    a, b = build_ragged(tmp_path / "a"), build_ragged(tmp_path / "b")
    assert sorted(os.listdir(a)) == sorted([npy.COMMIT, npy.DATA, npy.INDEX])
    assert (a / npy.DATA).stat().st_size == sum(im.nbytes for im in RAGGED)
    assert (a / npy.INDEX).stat().st_size == len(RAGGED) * npy.ROW == len(RAGGED) * 40
    for name in (npy.DATA, npy.INDEX, npy.COMMIT):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta = commit(a)
    assert meta["format"] == "imgbench" and meta["backend"] == "npy" and meta["compression"] == "none"
    assert meta["count"] == 5 and meta["data_bytes"] == sum(im.nbytes for im in RAGGED)
    assert meta["uniform"] is None and meta["labels"] is True and meta["attrs"] == {"kind": "ragged"}


def test_plain_numpy_reads_the_layout(tmp_path):
    """The README recipe: no imgbench needed."""
    path = build_ragged(tmp_path / "r")
    meta = commit(path)
    index = np.fromfile(path / "index.bin", dtype=np.dtype([tuple(f) for f in meta["index_dtype"]]),
                        count=meta["count"])
    data = np.memmap(path / "data.bin", dtype=np.uint8, mode="r", shape=(meta["data_bytes"],))
    dtypes = {1: "<u1", 2: "<u2", 3: "<i2", 4: "<f4"}
    for row, im in zip(index, RAGGED):
        shape = (row["h"], row["w"], row["c"]) if row["c"] else (row["h"], row["w"])
        count = int(np.prod(shape))
        got = np.frombuffer(data, dtypes[int(row["dtype"])], count, int(row["offset"])).reshape(shape)
        assert got.tobytes() == im.tobytes() and got.shape == im.shape
    assert index["label"].tolist() == [10, 11, 12, 13, 14]
    assert meta["checksum"] == "xxh3_64"
    # xxh3-64 of the raw bytes seeded with the image's label
    assert index["checksum"].tolist() == [
        xxhash.xxh3_64_intdigest(im.tobytes(), seed=label) for im, label in zip(RAGGED, [10, 11, 12, 13, 14])
    ]

    images = build_uniform(tmp_path / "u")
    meta = commit(tmp_path / "u")
    assert meta["uniform"] == {"shape": [8, 6, 3], "dtype": "|u1"}
    mapped = np.memmap(tmp_path / "u" / "data.bin", dtype=meta["uniform"]["dtype"], mode="r",
                       shape=(meta["count"], *meta["uniform"]["shape"]))
    assert np.array_equal(mapped, images)


def test_round_trip_and_reads_are_owned_copies(tmp_path):
    path = build_ragged(tmp_path / "r")
    with imgbench.open(path) as s:
        got = [s[i] for i in range(len(s))]
        many = s.read_many([4, 0, 2])
        everything = s.read_many()
        assert s.labels.tolist() == [10, 11, 12, 13, 14]
    # Closed (the map is gone): the arrays are still whole and writable.
    assert all(same(g, im) for g, im in zip(got, RAGGED))
    assert [same(m, RAGGED[i]) for m, i in zip(many, [4, 0, 2])] == [True] * 3
    assert all(same(e, im) for e, im in zip(everything, RAGGED))
    assert all(g.flags.owndata and g.flags.writeable for g in got)

    images = build_uniform(tmp_path / "u")
    with imgbench.open(tmp_path / "u") as s:
        one, few, every = s[3], s.read_many([5, 1, 5]), s.read_many()
        assert s.labels.tolist() == list(range(0, 40, 2))
    assert same(one, images[3]) and same(few, images[[5, 1, 5]]) and same(every, images)
    for arr in (one, few, every):
        assert arr.flags.writeable and (arr.flags.owndata or arr.base.flags.owndata)
        arr[...] = 0  # owned: writing does not touch the store
    with imgbench.open(tmp_path / "u") as s:
        assert same(s.read_many(), images)


def test_only_compression_none_and_its_options(tmp_path):
    assert registry.get("npy").compressions == ("none",)
    with pytest.raises(imgbench.UnsupportedError, match="not supported"):
        imgbench.open(tmp_path / "z", "w", backend="npy", compression="zstd")
    with pytest.raises(imgbench.UnsupportedError, match="no level"):
        imgbench.open(tmp_path / "z", "w", backend="npy", level=3)
    with pytest.raises(imgbench.UnsupportedError, match="sync"):
        imgbench.open(tmp_path / "z", "w", backend="npy", sync="yes")
    with pytest.raises(imgbench.UnsupportedError, match="map_size"):
        imgbench.open(tmp_path / "z", "w", backend="npy", map_size=10)
    with imgbench.open(tmp_path / "z", "w", backend="npy", sync=False) as s:
        s.append(sample((4, 4), np.uint16))
    assert len(imgbench.open(tmp_path / "z")) == 1
    assert not (tmp_path / "z").with_suffix(".npy").exists()


# ------------------------------------------------------------------ append
def test_append_writes_only_past_the_committed_end(tmp_path, monkeypatch):
    path = tmp_path / "u"
    images = build_uniform(path, n=10)
    data = path / npy.DATA
    before, inode, size = data.read_bytes(), data.stat().st_ino, data.stat().st_size
    writes = []
    real = os.pwritev

    def spy(fd, buffers, offset):
        writes.append((os.readlink(f"/proc/self/fd/{fd}"), offset))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "pwritev", spy)
    extra = [sample((8, 6, 3), np.uint8, seed=100), sample((2, 3), np.int16, seed=101)]
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[7, 8])
    monkeypatch.undo()
    assert data.stat().st_ino == inode, "appended in place, not copied"
    assert data.read_bytes()[:size] == before, "committed bytes are never rewritten"
    assert data.stat().st_size == size + sum(im.nbytes for im in extra)
    data_writes = [off for name, off in writes if name.endswith(npy.DATA)]
    index_writes = [off for name, off in writes if name.endswith(npy.INDEX)]
    assert data_writes and min(data_writes) >= size
    assert index_writes and min(index_writes) >= 10 * npy.ROW
    with imgbench.open(path) as s:
        assert len(s) == 12 and same(s.read_many(range(10)), images)
        assert same(s[10], extra[0]) and same(s[11], extra[1])
        assert s.labels.tolist() == list(range(0, 20, 2)) + [7, 8]
    assert commit(path)["uniform"] is None


def test_bytes_past_the_commit_are_ignored_then_overwritten(tmp_path):
    """What a writer killed mid-append leaves: tails the commit record does not count."""
    path = tmp_path / "u"
    images = build_uniform(path, n=6)
    size = (path / npy.DATA).stat().st_size
    with open(path / npy.DATA, "ab") as f:
        f.write(b"\xff" * 5000)
    with open(path / npy.INDEX, "ab") as f:
        f.write(b"\xee" * 100)
    (path / f".{npy.COMMIT}.abc.part").write_text("{half")  # a killed writer's commit temporary
    with imgbench.open(path) as s:
        assert len(s) == 6 and same(s.read_many(), images)
    extra = sample((8, 6, 3), np.uint8, seed=50)
    with imgbench.open(path, "a") as s:
        s.append(extra, label=99)
    assert (path / npy.DATA).stat().st_size == size + extra.nbytes
    assert (path / npy.INDEX).stat().st_size == 7 * npy.ROW
    assert sorted(os.listdir(path)) == sorted([npy.COMMIT, npy.DATA, npy.INDEX])
    with imgbench.open(path) as s:
        assert same(s[6], extra) and s.labels[-1] == 99 and same(s.read_many(range(6)), images)


def test_aborted_append_leaves_files_as_committed(tmp_path):
    path = tmp_path / "u"
    build_uniform(path, n=4)
    sizes = [(path / n).stat().st_size for n in (npy.DATA, npy.INDEX)]
    with pytest.raises(RuntimeError):
        with imgbench.open(path, "a") as s:
            s.extend(np.zeros((3, 8, 6, 3), np.uint8), labels=[0, 0, 0])  # written, never committed
            raise RuntimeError("boom")
    assert [(path / n).stat().st_size for n in (npy.DATA, npy.INDEX)] == sizes
    assert len(imgbench.open(path)) == 4


def test_reader_keeps_its_length_while_an_appender_commits(tmp_path):
    path = tmp_path / "u"
    images = build_uniform(path, n=5)
    with imgbench.open(path) as reader:
        with imgbench.open(path, "a") as s:
            for i in range(3):
                s.append(sample((8, 6, 3), np.uint8, seed=200 + i), label=1)
                s.flush()
                assert len(reader) == 5 and same(reader.read_many(), images)
        assert len(imgbench.open(path)) == 8


# ------------------------------------------------------------------ damage
TRUNCATED = textwrap.dedent(
    """
    import sys, imgbench
    try:
        with imgbench.open(sys.argv[1]) as s:
            s.read_many()
            s.labels
    except imgbench.CorruptStoreError as exc:
        print("refused:", exc)
    """
)


@pytest.mark.parametrize("victim", [npy.DATA, npy.INDEX])
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
def test_truncated_file_is_refused_before_it_can_sigbus(tmp_path, victim, layout):
    path = tmp_path / "t"
    if layout == "uniform":
        build_uniform(path, n=400, shape=(32, 32, 3))  # 1.2 MB: many pages past the cut
    else:
        build_ragged(path)
    target = path / victim
    os.truncate(target, target.stat().st_size // 2)
    result = scripts.run(TRUNCATED, path, timeout=60)
    assert result.returncode == 0, f"reader died (signal {-result.returncode}): {result.stderr}"
    assert "refused:" in result.stdout and "truncated" in result.stdout, result.stdout


def _corrupt_row(path, index, **fields):
    table = rows(path)
    for key, value in fields.items():
        table[index][key] = value
    table.tofile(path / npy.INDEX)


ROW_CASES = {
    "negative offset": dict(offset=-64),
    "offset beyond the file": dict(offset=10**15),
    "huge shape": dict(h=2**32 - 1, w=2**32 - 1, c=4),
    "zero height": dict(h=0),
    "five channels": dict(c=5),
    "unknown dtype id": dict(dtype=9),
    "dtype id past a byte": dict(dtype=2**31 + 1),
    "wrong dtype id, size mismatch": dict(dtype=4),
    "overlapping offsets": dict(offset=0),
}


@pytest.mark.parametrize("case", list(ROW_CASES), ids=list(ROW_CASES))
def test_hostile_index_rows(tmp_path, case):
    path = build_ragged(tmp_path / "r")
    _corrupt_row(path, 2, **ROW_CASES[case])
    tracemalloc.start()
    try:
        with pytest.raises(imgbench.CorruptStoreError):
            with imgbench.open(path) as s:
                s.read_many()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"a damaged index cost {peak} bytes of memory"


def _edit_commit(path, **changes):
    meta = commit(path)
    meta.update(changes)
    (path / npy.COMMIT).write_text(json.dumps(meta))


COMMIT_CASES = {
    "not json": b"{half",
    "a list": b"[]",
    "count beyond the index": dict(count=10**12),
    "negative count": dict(count=-1),
    "data_bytes beyond the file": dict(data_bytes=10**12),
    "negative data_bytes": dict(data_bytes=-5),
    "data_bytes not an int": dict(data_bytes="12"),
    "huge uniform shape": dict(uniform={"shape": [10**9, 10**9, 3], "dtype": "|u1"}),
    "uniform shape lies": dict(uniform={"shape": [8, 6, 4], "dtype": "|u1"}),
    "foreign dtype code": dict(uniform={"shape": [8, 6, 3], "dtype": "<f8"}),
    "object dtype code": dict(uniform={"shape": [8, 6, 3], "dtype": "|O"}),
    "five channels": dict(uniform={"shape": [8, 6, 5], "dtype": "|u1"}),
    "foreign index layout": dict(index_dtype=[["offset", "<i4"]]),
    "32-byte rows without checksums": dict(
        index_dtype=[["offset", "<i8"], ["label", "<i8"], ["h", "<u4"], ["w", "<u4"], ["c", "<u4"], ["dtype", "<u4"]]
    ),
    "other backend": dict(backend="disk"),
    "unknown compression": dict(compression="zstd"),
}


@pytest.mark.parametrize("case", list(COMMIT_CASES), ids=list(COMMIT_CASES))
def test_hostile_commit_record(tmp_path, case):
    path = tmp_path / "u"
    build_uniform(path, n=10)
    change = COMMIT_CASES[case]
    if isinstance(change, bytes):
        (path / npy.COMMIT).write_bytes(change)
    else:
        _edit_commit(path, **change)
    tracemalloc.start()
    try:
        with pytest.raises(imgbench.CorruptStoreError):
            with imgbench.open(path) as s:
                s.read_many()
                s.labels
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    with pytest.raises(imgbench.ImgbenchError):
        imgbench.open(path, "a").close()


@pytest.mark.parametrize("change", [dict(count=10**12), dict(data_bytes=10**12)], ids=["count", "data_bytes"])
def test_ragged_commit_claiming_more_than_the_files_hold(tmp_path, change):
    path = build_ragged(tmp_path / "r")
    _edit_commit(path, **change)
    for mode in ("r", "a"):
        with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
            imgbench.open(path, mode).close()


def test_appender_touches_nothing_of_a_newer_or_foreign_store(tmp_path):
    path = tmp_path / "u"
    build_uniform(path, n=3)
    with open(path / npy.DATA, "ab") as f:
        f.write(b"newer format data past data_bytes")
    size = (path / npy.DATA).stat().st_size
    for change in (dict(version=99), dict(backend="other"), dict(compression="zstd")):
        good = commit(path)
        _edit_commit(path, **change)
        with pytest.raises(imgbench.CorruptStoreError):
            imgbench.open(path, "a")
        assert (path / npy.DATA).stat().st_size == size
        (path / npy.COMMIT).write_text(json.dumps(good))


def test_index_row_disagreeing_with_a_uniform_commit(tmp_path):
    path = tmp_path / "u"
    build_uniform(path, n=10)
    _corrupt_row(path, 9, h=7)
    with pytest.raises(imgbench.CorruptStoreError, match="row 9"):
        imgbench.open(path)


def test_missing_files(tmp_path):
    for name in (npy.DATA, npy.INDEX):
        path = build_ragged(tmp_path / name)
        (path / name).unlink()
        with pytest.raises(imgbench.CorruptStoreError, match="missing"):
            imgbench.open(path)
        with pytest.raises(imgbench.CorruptStoreError, match="missing"):
            imgbench.open(path, "a")


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_store_files_that_are_not_regular_files(tmp_path, kind):
    """A FIFO must not hang the reader, a directory must not be mapped."""
    for name in (npy.DATA, npy.INDEX, npy.COMMIT):
        path = build_ragged(tmp_path / f"{kind}-{name}")
        (path / name).unlink()
        os.mkdir(path / name) if kind == "directory" else os.mkfifo(path / name)
        for mode in ("r", "a"):
            with pytest.raises(imgbench.CorruptStoreError):
                imgbench.open(path, mode).close()


def test_empty_store(tmp_path):
    with imgbench.open(tmp_path / "e", "w", backend="npy"):
        pass
    assert (tmp_path / "e" / npy.DATA).stat().st_size == 0
    with imgbench.open(tmp_path / "e") as s:
        assert len(s) == 0 and s.read_many() == [] and s.labels is None
        with pytest.raises(IndexError):
            s[0]
    with imgbench.open(tmp_path / "e", "a") as s:
        s.append(sample((3, 3), np.float32), label=5)
    with imgbench.open(tmp_path / "e") as s:
        assert same(s[0], sample((3, 3), np.float32)) and s.labels.tolist() == [5]


# ------------------------------------------------------------------ checksums in the index
@pytest.mark.parametrize("layout", ["uniform", "ragged"])
def test_npy_short_index_is_refused(tmp_path, layout):
    path = tmp_path / "s"
    images = images_for("none", layout)
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
            assert np.array_equal(s.checksums, checksum.digests(images, [7 * i - 3 for i in range(len(images))]))
    # Short before opening: refused at open, before anything is mapped.
    with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        imgbench.open(path)
    assert integrity.verify(path).problems

def test_npy_checksum_column_damage_is_a_damaged_image(tmp_path):
    """A flipped bit in a stored digest: the image is reported, never silently passed."""
    path = tmp_path / "s"
    images = images_for("none", "uniform")
    write(path, "npy", "none", images)
    rows = np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)
    rows[1]["checksum"] ^= np.uint64(1 << 40)
    rows.tofile(path / npy.INDEX)
    report = integrity.verify(path)
    assert sorted(report.damaged) == [1]


# ------------------------------------------------------------------ hostile stores (see hostile.py)
@pytest.mark.parametrize("case", [c for c in hostile.SYMLINK_BUGS if c.startswith("npy")])
def test_store_files_symlinked_outside_the_store_are_not_followed(tmp_path, case):
    hostile.assert_not_followed(*hostile.symlinked(tmp_path, case))


def test_special_files_that_are_already_refused(tmp_path):
    """Regression guard: a FIFO as data.bin (probed in a subprocess: a hang is a timeout, not a stuck pytest)."""
    path = hostile.build(tmp_path, "npy")
    (path / "data.bin").unlink()
    os.mkfifo(path / "data.bin")
    assert_refused(probe(path, "all", timeout=20))


# ------------------------------------------------------------------ a gap the fuzz found, pinned


@SHAPE_GAP_XFAIL
def test_shape_that_loses_its_trailing_1_is_found_with_verify(tmp_path):
    """The index row's c 1 -> 0 (one bit): (5, 6, 1) would read as (5, 6) with the same bytes."""
    path = tmp_path / "s"
    with imgbench.open(path, "w", backend="npy") as s:
        s.extend([np.zeros((12, 10, 3), np.uint8), np.arange(30, dtype=np.uint8).reshape(5, 6, 1)], labels=[1, 2])
    _corrupt_row(path, 1, c=0)
    with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError):
        s[1]
