"""Hostile stores: decompression bombs, lying metadata, symlinks and special files, foreign HDF5 features.

Threat model: someone hands you a store (a download, an upload to a service that converts
datasets). Opening and reading it must give exact images or a clean ``CorruptStoreError``:
never a crash, a hang, an allocation far beyond the store's size, wrong pixels, or a read
of (or a write to) a file outside the store. Per-image checksums do not help here: an
attacker drops ``checksum`` from the metadata or recomputes xxh3 (it is not a MAC), so
these cases open stores with the default ``verify=False``.

Every crafted store is read in a subprocess: a crash shows as the signal that killed it,
a hang as a timeout, and memory as the child's peak RSS growth and tracemalloc peak
(with RLIMIT_AS capped, so a runaway allocation cannot take the machine down).

Covered elsewhere, not repeated here:

- tar: crafted index rows (negative/huge offsets and sizes, shapes, dtype ids), shard names
  that leave the store (``../``, absolute), symlinked shards, FIFOs, symlinked commit record:
  ``tests/test_tar.py::test_crafted_index_is_refused_without_big_allocations``,
  ``::test_shard_names_that_leave_the_store_are_refused``, ``::test_symlinked_or_special_shards_are_refused``;
- npy: hostile index rows and commit records: ``tests/test_npy.py::test_hostile_index_rows``,
  ``::test_hostile_commit_record``, a FIFO as ``data.bin`` (``_open_file`` refuses non-regular files);
- zarr: lying records, huge declared shapes, ragged index lies, foreign codecs:
  ``tests/test_zarr.py::test_a_lying_record_is_refused``, ``::test_huge_declared_shapes_are_refused_without_allocating``,
  ``::test_ragged_index_lies_are_refused``, ``::test_codecs_imgbench_does_not_write_are_never_run``;
- disk sidecar lies and lmdb value-header lies: ``tests/test_corruption.py``.

Cases that fail today are marked ``xfail(strict=True)`` with the bug in the reason: when
the bug is fixed the test XPASSes, strict mode fails it, and the marker must go.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import imgbench

from .conftest import store_path

N = 6
SHAPE = (16, 16, 3)
#: memory a refused store may cost the reader (RSS growth and tracemalloc peak)
BOUND = 64 << 20
#: address-space cap of the probe: a lie that asks for more fails there, not on the machine
AS_LIMIT = 4 << 30
#: seconds a probe that blocks forever is given (startup is ~1 s)
HANG_TIMEOUT = 8


def images() -> np.ndarray:
    return np.stack([np.random.default_rng(100 + i).integers(0, 256, SHAPE, dtype=np.uint8) for i in range(N)])


def build(tmp_path: Path, backend: str, compression: str | None = None, name: str = "store", labels=True) -> Path:
    path = store_path(tmp_path, backend, name)
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images(), labels=np.arange(N) if labels else None)
    return path


# ------------------------------------------------------------------ the probe
PROBE = textwrap.dedent(
    """
    import hashlib, json, resource, sys, tracemalloc, traceback
    path, how, limit, verify = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    import numpy as np
    import imgbench
    from imgbench.storage import registry
    for name in imgbench.backends():  # every import before the baseline
        registry.get(name)

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def fp(im):
        return [list(im.shape), im.dtype.str, hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()]

    base = rss()
    tracemalloc.start()
    try:
        with imgbench.open(path, verify=verify) as s:
            n = len(s)
            got = []
            if how == "bulk" or how == "all":
                every = s.read_many() if n else []
                got = [fp(every[i]) for i in range(n)]
            if how == "all":
                got = [fp(s[i]) for i in range(n)]
                s.labels
            if how.startswith("one:"):
                got = [fp(s[int(how[4:])])]
            if how == "labels":
                s.labels
        out = {"outcome": "read", "count": n, "images": got}
    except imgbench.ImgbenchError as exc:
        out = {"outcome": "error", "type": type(exc).__name__, "corrupt": isinstance(exc, imgbench.CorruptStoreError),
               "message": str(exc)[:500]}
    except BaseException as exc:
        out = {"outcome": "exception", "type": type(exc).__name__, "message": str(exc)[:500],
               "traceback": traceback.format_exc()[-2000:]}
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
    out["rss_growth"] = rss() - base
    print(json.dumps(out))
    """
)


def start_probe(path: Path, how: str = "all", verify: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-c", PROBE, str(path), how, str(AS_LIMIT), "1" if verify else "0"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_probe(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=max(0.1, timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"outcome": "hang", "message": f"no answer within {timeout:.0f} s (killed)"}
    if proc.returncode < 0:
        return {"outcome": "crash", "signal": signal.Signals(-proc.returncode).name, "message": err[-1500:]}
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"outcome": "died", "returncode": proc.returncode, "message": err[-1500:]}
    return json.loads(lines[-1])


def probe(path: Path, how: str = "all", verify: bool = False, timeout: float = 60) -> dict:
    """Open and read ``path`` in a fresh interpreter; what happened, as a dict."""
    return finish_probe(start_probe(path, how, verify), timeout)


def describe(res: dict) -> str:
    if res["outcome"] == "crash":
        return f"the reader was killed by {res['signal']}: {res['message']}"
    if res["outcome"] == "read":
        return f"the store read without error ({res['count']} images) instead of being refused"
    if res["outcome"] == "error":
        peak = max(res["traced_peak"], res["rss_growth"])
        return f"{res['type']}: {res['message']} (peak memory {peak / 2**20:.0f} MiB)"
    return f"{res['outcome']}: {res.get('type', '')} {res['message']}"


def assert_refused(res: dict, bound: int = BOUND) -> None:
    """A clean CorruptStoreError, at a small memory cost."""
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert res["traced_peak"] < bound, f"refusing cost {res['traced_peak'] / 2**20:.0f} MiB of allocations"
    assert res["rss_growth"] < bound, f"refusing grew the reader's RSS by {res['rss_growth'] / 2**20:.0f} MiB"


# ------------------------------------------------------------------ watching files outside the store
class Watch:
    """inotify on files outside the store: did anything open, read or write them?"""

    IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_OPEN = 0x1, 0x2, 0x4, 0x20
    NAMES = {IN_ACCESS: "read", IN_MODIFY: "written", IN_ATTRIB: "attributes changed", IN_OPEN: "opened"}

    def __init__(self, *paths: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "inotify_init1"):
            pytest.skip("needs Linux inotify")
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        mask = self.IN_ACCESS | self.IN_MODIFY | self.IN_ATTRIB | self.IN_OPEN
        self.wds = {libc.inotify_add_watch(self.fd, os.fsencode(p), mask): p for p in paths}

    def events(self) -> list[str]:
        buf = b""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            buf += chunk
        os.close(self.fd)
        seen, pos = [], 0
        while pos + 16 <= len(buf):
            wd, mask, _cookie, length = struct.unpack_from("iIII", buf, pos)
            pos += 16 + length
            for bit, what in self.NAMES.items():
                if mask & bit:
                    seen.append(f"{self.wds.get(wd)} {what}")
        return seen


def outside_dir(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir(exist_ok=True)
    return d


# ================================================================== decompression bombs
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def lying_png(height: int, width: int, channels: int = 3) -> bytes:
    """A well-formed PNG whose header declares ``height x width`` and whose IDAT holds one row."""
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + width * channels))
    return PNG_SIG + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def zstd_rle(total: int, declare: int | None = None) -> bytes:
    """A zstd frame of RLE blocks that really decodes to ``total`` zero bytes (~4 stored bytes per 128 KiB)."""
    frame = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", total if declare is None else declare))
    left = total
    while True:
        n = min(left, 128 << 10)
        left -= n
        frame += struct.pack("<I", (n << 3) | (1 << 1) | (left == 0))[:3] + b"\x00"
        if not left:
            return bytes(frame)


def deflate_zeros(total: int) -> bytes:
    z = zlib.compressobj(9)
    block = bytes(1 << 22)
    parts = [z.compress(block) for _ in range(total // len(block))]
    return b"".join(parts) + z.flush()


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 (H5_checksum_fletcher32): the filter appends it, little-endian."""
    words = np.frombuffer(data[: len(data) // 2 * 2], ">u2").astype(np.uint64)
    s1 = s2 = 0
    for k in range(0, len(words), 360):
        sums = np.cumsum(words[k : k + 360]) + s1
        s2 += int(sums.sum())
        s1 = int(sums[-1])
        s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    if len(data) % 2:
        s1 += data[-1] << 8
        s2 += s1
        s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    s1, s2 = (s1 & 0xFFFF) + (s1 >> 16), (s2 & 0xFFFF) + (s2 >> 16)
    return ((s2 << 16) | s1) & 0xFFFFFFFF


def test_fletcher32_matches_hdf5(tmp_path):
    """The bombs below carry a valid Fletcher-32: the checksum is no defence against a crafted chunk."""
    import h5py

    path = build(tmp_path, "hdf5", "gzip")
    with h5py.File(path) as f:
        _mask, chunk = f["images"].id.read_direct_chunk((0, 0, 0, 0))
    assert struct.pack("<I", fletcher32(chunk[:-4])) == chunk[-4:]


# ---- PNG: header and store metadata both declare a huge image, the stored bytes are tiny
HUGE_PNG = (50_000, 50_000)  # 7.5 GB of RGB pixels declared by a ~100 KB file at most


def _disk_png_bomb(tmp_path: Path) -> Path:
    path = build(tmp_path, "disk", "png")
    meta = json.loads((path / "imgbench.json").read_text())
    meta["images"] = {"shape": [*HUGE_PNG, 3], "dtype": "|u1"}
    (path / "imgbench.json").write_text(json.dumps(meta))
    (path / "00000000.png").write_bytes(lying_png(*HUGE_PNG))
    return path


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
    path = build(tmp_path, "lmdb", "png")
    old = _lmdb_value(path, 0)
    header = bytearray(old[: LMDB_HEADER.size])
    struct.pack_into("<3I", header, 8, *HUGE_PNG, 3)
    _lmdb_value(path, 0, bytes(header) + lying_png(*HUGE_PNG))
    return path


def _tar_png_bomb(tmp_path: Path) -> Path:
    from imgbench.storage import tar

    path = build(tmp_path, "tar", "png")
    cols = list(tar.INDEX_COLUMNS)
    rows = np.fromfile(path / tar.INDEX, "<i8").reshape(-1, len(cols))
    bomb = lying_png(*HUGE_PNG)
    offset, size = int(rows[0, cols.index("offset")]), int(rows[0, cols.index("size")])
    assert len(bomb) <= size
    shard = path / json.loads((path / tar.COMMIT).read_text())["shards"][0]["name"]
    data = bytearray(shard.read_bytes())
    data[offset : offset + len(bomb)] = bomb
    shard.write_bytes(bytes(data))
    rows[0, cols.index("size")] = len(bomb)
    rows[0, cols.index("height")], rows[0, cols.index("width")] = HUGE_PNG
    rows.astype("<i8").tofile(path / tar.INDEX)
    return path


@pytest.mark.parametrize("craft", [_disk_png_bomb, _lmdb_png_bomb, _tar_png_bomb], ids=["disk", "lmdb", "tar"])
def test_png_declaring_a_huge_image_is_refused_without_allocating(tmp_path, craft):
    path = craft(tmp_path)
    assert_refused(probe(path, "one:0"))
    assert_refused(probe(path, "bulk"))


# ---- zstd: a frame that declares (or really decodes to) far more than the image it stands for
def test_lmdb_zstd_frame_larger_than_its_image_is_refused(tmp_path):
    """Header says 16x16x3, the frame really decodes to 256 MiB of zeros from ~8 KiB."""
    path = build(tmp_path, "lmdb", "zstd")
    old = _lmdb_value(path, 2)
    _lmdb_value(path, 2, old[: LMDB_HEADER.size] + zstd_rle(256 << 20))
    assert_refused(probe(path, "one:2"))
    assert_refused(probe(path, "bulk"))


def test_lmdb_zstd_header_and_frame_both_lying_are_refused(tmp_path):
    path = build(tmp_path, "lmdb", "zstd")
    old = _lmdb_value(path, 2)
    h, w, c = 1 << 20, 1 << 20, 4  # uint8: 2**42 bytes declared
    header = bytearray(old[: LMDB_HEADER.size])
    struct.pack_into("<3I", header, 8, h, w, c)
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", h * w * c) + b"\x01\x00\x00"
    _lmdb_value(path, 2, bytes(header) + frame)
    assert_refused(probe(path, "one:2"))


def _hdf5_bomb(tmp_path: Path, compression: str, payload: bytes) -> Path:
    import h5py

    path = build(tmp_path, "hdf5", compression, labels=False)
    with h5py.File(path, "r+") as f:
        ds = f["images"]
        assert ds.id.get_num_chunks() == 1
        ds.id.write_direct_chunk((0,) * ds.ndim, payload + struct.pack("<I", fletcher32(payload)), 0)
    return path


def test_hdf5_zstd_chunk_bomb_is_refused(tmp_path):
    path = _hdf5_bomb(tmp_path, "zstd", zstd_rle(256 << 20))
    assert path.stat().st_size < 200_000
    assert_refused(probe(path, "one:1"))


def test_hdf5_gzip_chunk_bomb_is_refused(tmp_path):
    path = _hdf5_bomb(tmp_path, "gzip", deflate_zeros(256 << 20))
    assert_refused(probe(path, "one:1"))


def test_hdf5_zstd_chunk_declaring_a_terabyte_is_refused(tmp_path):
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    assert_refused(probe(_hdf5_bomb(tmp_path, "zstd", frame), "one:1"))


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return struct.pack("<I", google_crc32c.value(data))


def _zarr_replace_inner_chunk(array_dir: Path, payload: bytes) -> None:
    """Swap inner chunk 0 of shard 0 for ``payload`` (+ its CRC-32C), rebuilding the shard index."""
    import zarr

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
    path = build(tmp_path, "zarr", "zstd", labels=False)
    _zarr_replace_inner_chunk(path / "images", zstd_rle(256 << 20))
    assert_refused(probe(path, "one:1"))


def test_zarr_zstd_inner_chunk_declaring_a_terabyte_is_refused(tmp_path):
    path = build(tmp_path, "zarr", "zstd", labels=False)
    frame = b"\x28\xb5\x2f\xfd" + bytes([0b11100000]) + struct.pack("<Q", 1 << 40) + b"\x01\x00\x00"
    _zarr_replace_inner_chunk(path / "images", frame)
    assert_refused(probe(path, "one:1"))


# ================================================================== lying metadata: HDF5
def _h5_meta(f, **changes) -> None:
    meta = json.loads(f.attrs["imgbench"])
    meta.update(changes)
    f.attrs["imgbench"] = json.dumps(meta)


@pytest.mark.parametrize("count", [40_000, 10**12], ids=["40k", "1e12"])
def test_hdf5_count_beyond_the_stored_chunks_is_refused(tmp_path, count):
    import h5py

    path = build(tmp_path, "hdf5", labels=False)
    with h5py.File(path, "r+") as f:
        f["images"].resize(count, axis=0)
        for name in [k for k in f if k not in ("images", "attrs")]:
            if f[name].maxshape[0] is None:  # per-image side arrays (checksums) follow the lie
                f[name].resize(count, axis=0)
        _h5_meta(f, count=count)
    assert path.stat().st_size < 4 << 20
    assert_refused(probe(path, f"one:{count - 1}"))
    assert_refused(probe(path, "bulk"))


def test_hdf5_huge_image_shape_is_refused(tmp_path):
    import h5py

    path = tmp_path / "huge.h5"
    meta = {"format": "imgbench", "version": 1, "backend": "hdf5", "compression": "none", "level": None,
            "count": 3, "labels": False, "layout": "uniform", "attrs": {}}
    with h5py.File(path, "w") as f:
        f.attrs["imgbench"] = json.dumps(meta)
        f.create_dataset("images", shape=(3, 100_000, 100_000, 4), maxshape=(None, 100_000, 100_000, 4),
                         dtype="<u2", chunks=(1, 1000, 1000, 4))
        f.create_dataset("attrs", data="{}")
    assert path.stat().st_size < 1 << 20
    assert_refused(probe(path, "one:0"))


@pytest.mark.parametrize("dtype", ["<f8", ">u2", "str"])
def test_hdf5_foreign_image_dtype_is_refused(tmp_path, dtype):
    import h5py

    path = build(tmp_path, "hdf5", labels=False)
    with h5py.File(path, "r+") as f:
        old = f["images"]
        shape, chunks = old.shape, old.chunks
        del f["images"]
        dt = h5py.string_dtype() if dtype == "str" else dtype
        f.create_dataset("images", shape=shape, maxshape=(None, *shape[1:]), dtype=dt, chunks=chunks)
        if dtype != "str":
            f["images"][...] = images().astype(dtype)
    assert_refused(probe(path, "one:0"))


@pytest.mark.parametrize("change", ["negative offset", "offset past the data", "negative shape", "dtype <f8",
                                   "dtype |O", "shapes 2**40"])
def test_hdf5_hostile_ragged_index_is_refused(tmp_path, change):
    import h5py

    path = tmp_path / "r.h5"
    with imgbench.open(path, "w") as s:
        s.extend([np.zeros((4, 5), np.uint8), np.ones((6, 3, 3), np.uint16), np.full((2, 2), 7, np.uint8)])
    with h5py.File(path, "r+") as f:
        if change == "negative offset":
            f["offsets"][1] = -40
        elif change == "offset past the data":
            f["offsets"][2] = 2**62
        elif change == "negative shape":
            f["shapes"][1] = [-6, -3, 3]
        elif change == "shapes 2**40":
            f["shapes"][1] = [2**20, 2**20, 4]
        else:
            f["dtypes"][1] = change.split()[1].encode()
    res = probe(path, "all")
    assert_refused(res)


# ------------------------------------------------------------------ HDF5 features that read other files
def _hdf5_pointing_outside(tmp_path: Path, how: str) -> tuple[Path, Path]:
    import h5py

    outside = outside_dir(tmp_path)
    path = build(tmp_path, "hdf5", labels=False)
    shape = (N, *SHAPE)
    secret_raw = outside / "secret.bin"
    secret_raw.write_bytes(bytes([42]) * int(np.prod(shape)))
    secret_h5 = outside / "secret.h5"
    with h5py.File(secret_h5, "w") as g:
        g["x"] = np.full(shape, 7, np.uint8)
    with h5py.File(path, "r+") as f:
        del f["images"]
        if how == "external storage":
            f.create_dataset("images", shape=shape, dtype=np.uint8, external=[(str(secret_raw), 0, int(np.prod(shape)))])
            target = secret_raw
        elif how == "external link":
            f["images"] = h5py.ExternalLink(str(secret_h5), "x")
            target = secret_h5
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
            layout[:] = h5py.VirtualSource(str(secret_h5), "x", shape=shape)
            f.create_virtual_dataset("images", layout)
            target = secret_h5
    return path, target


@pytest.mark.parametrize("how", ["external storage", "external link", "virtual dataset"])
def test_hdf5_datasets_that_read_other_files_are_refused(tmp_path, how):
    path, target = _hdf5_pointing_outside(tmp_path, how)
    watch = Watch(target)
    res = probe(path, "all")
    touched = watch.events()
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


# ================================================================== lying metadata: LMDB
def test_lmdb_meta_claiming_a_huge_uniform_shape_is_refused(tmp_path):
    path = build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform={"shape": [100_000, 100_000, 4], "dtype": "<u2"}))
    assert_refused(probe(path, "bulk"))


@pytest.mark.parametrize("uniform", [{"shape": [16, 16, 3], "dtype": "|O"}, {"shape": [16, 16, 9], "dtype": "|u1"},
                                     {"shape": "x", "dtype": "|u1"}, {"shape": [16, 16, 3], "dtype": "<f8"}])
def test_lmdb_meta_with_a_foreign_uniform_entry_is_refused(tmp_path, uniform):
    path = build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform=uniform))
    assert_refused(probe(path, "all"))


@pytest.mark.parametrize("count", [N + 1, 10**12, -1, "6"])
def test_lmdb_meta_with_a_lying_count_is_refused(tmp_path, count):
    path = build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(count=count))
    assert_refused(probe(path, "all"))


@pytest.mark.parametrize("count", [10**9, 2**62])
def test_lmdb_lying_count_is_refused_before_labels_loop_over_it(tmp_path, count):
    """Found from outside the repo: labels looped over 10**12 label keys (minutes, GBs) before noticing."""
    path = build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(count=count))
    assert_refused(probe(path, "labels", timeout=30))


@pytest.mark.parametrize("shape", [[100_000, 100_000, 3], [48, 16]], ids=["huge", "same-bytes"])
def test_lmdb_uniform_shape_that_disagrees_with_the_images_is_refused_at_open(tmp_path, shape, capsys):
    """Found from outside the repo: s[i] read fine, read_many failed, and `imgbench verify` said ok."""
    from imgbench.adapters.integrity import verify

    path = build(tmp_path, "lmdb", "none")
    _lmdb_meta(path, lambda m: m.update(uniform={"shape": shape, "dtype": "|u1"}))
    assert_refused(probe(path, "one:0"))
    assert not verify(path).ok


@pytest.mark.parametrize("count", [10**9, 2**40])
def test_disk_sidecar_with_a_lying_count_is_refused_at_open(tmp_path, count):
    """Found from outside the repo: a uniform disk store sized its shape table by the sidecar's count (22 GiB)."""
    path = build(tmp_path, "disk", "none", labels=False)
    meta = json.loads((path / "imgbench.json").read_text())
    meta["count"] = count
    (path / "imgbench.json").write_text(json.dumps(meta))
    res = probe(path, "one:0")
    assert_refused(res)
    assert "missing" in res["message"]


def test_tar_member_renamed_outside_the_store_is_damage_when_verifying(tmp_path):
    """Readers use the index, not names; but webdataset/tar tools use names: a verified read must refuse."""
    from imgbench.adapters.integrity import verify
    from imgbench.storage.tar import member_header

    path = build(tmp_path, "tar", "none")
    shard = next(path.glob("*.tar"))
    data = bytearray(shard.read_bytes())
    at = data.find(b"00000002.npy")
    assert at >= 0
    size = int(data[at + 124 : at + 135], 8)
    data[at : at + 512] = member_header(b"../00000002.npy", size)  # a valid header, only the name lies
    shard.write_bytes(bytes(data))
    with imgbench.open(path) as s:
        assert s[2].shape == SHAPE  # plain reads go by the index and still read the pixels
    with imgbench.open(path, verify=True) as s:
        assert s[1].shape == SHAPE
        with pytest.raises(imgbench.CorruptStoreError, match="tar members of image 2"):
            s[2]
    report = verify(path)
    assert not report.ok and list(report.damaged) == [2]


# ================================================================== symlinks and special files
def _swap_for_symlink(victim: Path, target: Path) -> None:
    victim.unlink()
    victim.symlink_to(target)


def _outside_copy(tmp_path: Path, victim: Path) -> Path:
    target = outside_dir(tmp_path) / f"copy-of-{victim.name}"
    shutil.copyfile(victim, target)
    return target


def _secret_image(tmp_path: Path, suffix: str) -> Path:
    """A valid image file outside the store, of the victim's shape: the worst case, it decodes fine."""
    secret = np.full(SHAPE, 42, np.uint8)
    target = outside_dir(tmp_path) / f"secret{suffix}"
    if suffix == ".npy":
        np.save(target, secret)
    else:
        import imagecodecs

        target.write_bytes(imagecodecs.png_encode(secret))
    return target


SYMLINK_BUGS = {
    "disk png image": "imgbench/storage/disk.py _decode_file opens images without O_NOFOLLOW",
    "disk none image": "imgbench/storage/disk.py _decode_file opens images without O_NOFOLLOW",
    "disk sidecar": "imgbench/storage/disk.py _load reads imgbench.json through the symlink",
    "npy data.bin": "imgbench/storage/npy.py _open_file opens without O_NOFOLLOW",
    "npy commit record": "imgbench/storage/npy.py _open_file opens without O_NOFOLLOW",
    "zarr shard": "imgbench/storage/zarr.py _FileStore._open_key opens without O_NOFOLLOW",
    "zarr record": "imgbench/storage/zarr.py _FileStore._open_key / ZarrStore.detect follow the symlink",
    "lmdb data.mdb": "imgbench/storage/lmdb.py opens the environment without checking its files are not symlinks",
}


def _symlinked(tmp_path: Path, case: str) -> tuple[Path, Path]:
    if case.startswith("disk") and "image" in case:
        compression = case.split()[1]
        path = build(tmp_path, "disk", compression)
        suffix = ".png" if compression == "png" else ".npy"
        target = _secret_image(tmp_path, suffix)
        _swap_for_symlink(path / f"00000001{suffix}", target)
    elif case == "disk sidecar":
        path = build(tmp_path, "disk", "png")
        target = _outside_copy(tmp_path, path / "imgbench.json")
        _swap_for_symlink(path / "imgbench.json", target)
    elif case == "npy data.bin":
        path = build(tmp_path, "npy")
        data = bytearray((path / "data.bin").read_bytes())
        data[: int(np.prod(SHAPE))] = bytes([42]) * int(np.prod(SHAPE))  # same size, other pixels
        target = outside_dir(tmp_path) / "data.bin"
        target.write_bytes(bytes(data))
        _swap_for_symlink(path / "data.bin", target)
    elif case == "npy commit record":
        from imgbench.storage import npy

        path = build(tmp_path, "npy")
        target = _outside_copy(tmp_path, path / npy.COMMIT)
        _swap_for_symlink(path / npy.COMMIT, target)
    elif case == "zarr shard":
        path = build(tmp_path, "zarr")
        shard = next(p for p in (path / "images").iterdir() if p.name.startswith("c."))
        target = _outside_copy(tmp_path, shard)
        _swap_for_symlink(shard, target)
    elif case == "zarr record":
        path = build(tmp_path, "zarr")
        target = _outside_copy(tmp_path, path / "zarr.json")
        _swap_for_symlink(path / "zarr.json", target)
    elif case == "lmdb data.mdb":
        path = build(tmp_path, "lmdb")
        target = _outside_copy(tmp_path, path / "data.mdb")
        _swap_for_symlink(path / "data.mdb", target)
    else:
        raise AssertionError(case)
    return path, target


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=(
        f"BUG {bug}: a store file replaced by a symlink to a file outside the store is followed and read "
        "(with a valid target, its content is returned as the store's data). The tar backend refuses this "
        "(O_NOFOLLOW, S_ISREG): do the same"))) if not case.startswith(("disk", "npy", "zarr", "lmdb")) else case
    for case, bug in SYMLINK_BUGS.items()
])
def test_store_files_symlinked_outside_the_store_are_not_followed(tmp_path, case):
    path, target = _symlinked(tmp_path, case)
    watch = Watch(target)
    res = probe(path, "all")
    touched = watch.events()
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


def test_lmdb_lock_file_symlinked_outside_is_never_written(tmp_path):
    path = build(tmp_path, "lmdb")
    victim = outside_dir(tmp_path) / "precious.txt"
    victim.write_text("precious\n")
    lock = path / "lock.mdb"
    if lock.exists() or lock.is_symlink():
        lock.unlink()
    lock.symlink_to(victim)
    watch = Watch(victim)
    res = probe(path, "all")
    touched = watch.events()
    assert victim.read_text() == "precious\n", "reading the store overwrote a file outside it"
    assert res["outcome"] == "error" and res["corrupt"], describe(res)
    assert not touched, f"a file outside the store was accessed: {touched}"


SPECIAL_BUGS = {
    "disk image fifo": "imgbench/storage/disk.py _decode_file: open() of a FIFO blocks forever (no O_NONBLOCK, no S_ISREG check)",
    "disk image /dev/zero": "imgbench/storage/disk.py _decode_file: f.read() of /dev/zero never ends (unbounded allocation, MemoryError under RLIMIT_AS)",
    "zarr shard fifo": "imgbench/storage/zarr.py _FileStore._open_key: os.open of a FIFO blocks forever (no O_NONBLOCK, no S_ISREG check)",
    "zarr record fifo": "imgbench/storage/zarr.py ZarrStore.detect: open(zarr.json) of a FIFO blocks forever, so every imgbench.open() of the directory hangs in registry.detect",
}


def _special(tmp_path: Path, case: str) -> Path:
    if case.startswith("disk"):
        path = build(tmp_path, "disk", "png")
        victim = path / "00000001.png"
        victim.unlink()
        if case.endswith("fifo"):
            os.mkfifo(victim)
        else:
            victim.symlink_to("/dev/zero")
        return path
    path = build(tmp_path, "zarr")
    victim = path / "zarr.json" if "record" in case else next(
        p for p in (path / "images").iterdir() if p.name.startswith("c."))
    victim.unlink()
    os.mkfifo(victim)
    return path


@pytest.fixture(scope="module")
def special_results(tmp_path_factory) -> dict[str, dict]:
    """Every case that may block, probed at once: the hangs cost HANG_TIMEOUT once, not once each."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs")
    procs = {}
    for case in SPECIAL_BUGS:
        path = _special(tmp_path_factory.mktemp("special"), case)
        procs[case] = start_probe(path, "all")
    deadline = time.monotonic() + HANG_TIMEOUT
    return {case: finish_probe(proc, deadline - time.monotonic()) for case, proc in procs.items()}


@pytest.mark.parametrize("case", [
    case for case in SPECIAL_BUGS
])
def test_fifos_and_devices_in_a_store_are_refused_without_blocking(special_results, case):
    assert_refused(special_results[case])


@pytest.mark.parametrize("backend", ["npy", "lmdb", "disk"])
def test_special_files_that_are_already_refused(tmp_path, backend):
    """Regressions guards for the cases that are handled today."""
    path = build(tmp_path, backend)
    if backend == "npy":
        (path / "data.bin").unlink()
        os.mkfifo(path / "data.bin")
    elif backend == "lmdb":
        (path / "data.mdb").unlink()
        os.mkfifo(path / "data.mdb")  # not detected as LMDB: "no backend recognises it"
    else:
        (path / "imgbench.json").unlink()
        os.mkfifo(path / "imgbench.json")
    assert_refused(probe(path, "all", timeout=20))

