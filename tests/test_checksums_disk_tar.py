"""Per-image checksums on the disk and tar backends: stored with the images, found damaged bits, append, old stores.

Every test runs on every compression of both backends (raw ``none`` included).
Damage is done where the layout says the image's bytes are: after the ``.npy``
header for raw images, inside the PNG IDAT payload for PNG ones.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import xxhash

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.core import checksum
from imgbench.storage import registry
from imgbench.storage.disk import SIDECAR, DiskStore
from imgbench.storage.tar import (
    CHECKSUM,
    COMMIT,
    INDEX,
    INDEX_COLUMNS,
    OFFSET,
    SHARD,
    SIZE,
    TarStore,
    member_header,
)

from .conftest import same, sample

CONFIGS = [(b, c) for b in ("disk", "tar") for c in registry.get(b).compressions]
NCOL = len(INDEX_COLUMNS)
SHAPE = (16, 16, 3)
N = 5
DAMAGED = 2

pytestmark = pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c[0]}-{c[1]}")


# ------------------------------------------------------------------ helpers
def photos(n: int, start: int = 0, dtype=np.uint8, shape=SHAPE) -> np.ndarray:
    return np.stack([sample(shape, dtype, seed=start + i) for i in range(n)])


def smooth(n: int) -> np.ndarray:
    """Compressible images: a PNG of them recompressed at level 9 does not grow."""
    y, x = np.mgrid[0:24, 0:24]
    planes = [np.dstack([(x * 5 + i) % 256, (y * 7) % 256, (x + y + i) % 256]) for i in range(n)]
    return np.stack(planes).astype(np.uint8)


def build_labels(n: int) -> np.ndarray:
    """The labels ``build`` writes (the seeds of the stored digests)."""
    return np.arange(n) * 2 + 1


def build(path: Path, cfg, batch, labels=True, **options) -> None:
    backend, compression = cfg
    with imgbench.open(path, "w", backend=backend, compression=compression, **options) as s:
        s.extend(batch, labels=build_labels(len(batch)) if labels else None)


def record_name(backend: str) -> str:
    return SIDECAR if backend == "disk" else COMMIT


def record(path: Path, backend: str) -> dict:
    return json.loads((path / record_name(backend)).read_text())


def set_record(path: Path, backend: str, meta: dict) -> None:
    (path / record_name(backend)).write_text(json.dumps(meta))


def index_rows(path: Path) -> np.ndarray:
    return np.fromfile(path / INDEX, "<i8").reshape(-1, NCOL)


def npy_header_len(data: bytes) -> int:
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(fp)
    return fp.tell()


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset of the chunk's data, type, data) of every chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos + 8, data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def member(path: Path, backend: str, index: int) -> tuple[Path, int, int]:
    """The file holding image ``index`` and the byte range of its encoded bytes in it (from the layout)."""
    if backend == "disk":
        files = [p for p in path.iterdir() if p.name.startswith(f"{index:08d}.")]
        assert len(files) == 1
        return files[0], 0, files[0].stat().st_size
    meta = record(path, "tar")
    row = index_rows(path)[index]
    return path / meta["shards"][int(row[SHARD])]["name"], int(row[OFFSET]), int(row[SIZE])


def payload(path: Path, cfg, index: int) -> tuple[Path, int, int]:
    """File and byte range of image ``index``'s payload: raw pixels after the .npy header, or PNG IDAT data."""
    backend, compression = cfg
    file, start, size = member(path, backend, index)
    data = file.read_bytes()[start : start + size]
    if compression == "none":
        skip = npy_header_len(data)
        return file, start + skip, size - skip
    offset, _, body = next(c for c in png_chunks(data) if c[1] == b"IDAT")
    return file, start + offset, len(body)


def flip_bit(file: Path, at: int, bit: int = 4) -> None:
    data = bytearray(file.read_bytes())
    data[at] ^= 1 << bit
    file.write_bytes(bytes(data))


def bits_differing(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.unpackbits(np.bitwise_xor(a.view(np.uint8), b.view(np.uint8))).sum())


def cli_verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgbench.cli", "verify", "-q", str(path)], capture_output=True, text=True, timeout=120
    )


def assert_only_damaged(path: Path, batch: np.ndarray, damaged: int, *, format_detects: bool) -> None:
    """(a) verify=True reads refuse exactly ``damaged``; (b) verify and the CLI report exactly it."""
    others = [i for i in range(len(batch)) if i != damaged]
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {damaged}\b"):
            s[damaged]
        for i in others:
            assert same(s[i], batch[i])
        assert same(s.read_many(others), batch[others])
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {damaged}\b"):
            s.read_many()
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {damaged}\b"):
            s.read_many([damaged, others[0]])
    report = verify(path)
    assert report.checksummed and not report.ok
    assert sorted(report.damaged) == [damaged] and not report.problems
    if not format_detects:
        assert "checksum" in report.damaged[damaged]
    proc = cli_verify(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"damaged image {damaged}:" in proc.stdout and "Traceback" not in proc.stderr


def png_with_flipped_pixel_bit(data: bytes) -> bytes:
    """A valid PNG (every CRC and the zlib checksum right) whose decoded pixels differ from ``data``'s in one byte.

    The damage no container or codec check can see: only the per-image checksum finds it.
    """
    chunks = png_chunks(data)
    raw = bytearray(zlib.decompress(b"".join(body for _, kind, body in chunks if kind == b"IDAT")))
    raw[-1] ^= 0x01  # the last byte of the last scanline: a sample, never a filter-type byte
    out, done = [data[:8]], False
    for _, kind, body in chunks:
        if kind == b"IDAT":
            if done:
                continue
            body, kind, done = zlib.compress(bytes(raw), 9), b"IDAT", True
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    return b"".join(out)


def rewrite_tar_member(path: Path, index: int, blob: bytes) -> None:
    """Put ``blob`` in place of image ``index``'s member as a well-formed tar member (header, index size updated)."""
    file, offset, size = member(path, "tar", index)
    assert -(-len(blob) // 512) <= -(-size // 512), "the new member must fit the old one's blocks"
    data = bytearray(file.read_bytes())
    name = data[offset - 512 : offset - 412].rstrip(b"\0")
    data[offset - 512 : offset] = member_header(name, len(blob))
    padded = -(-size // 512) * 512
    data[offset : offset + padded] = blob + bytes(padded - len(blob))
    file.write_bytes(bytes(data))
    rows = index_rows(path)
    rows[index, SIZE] = len(blob)
    rows.astype("<i8").tofile(path / INDEX)


# ------------------------------------------------------------------ a flipped bit is found
def test_flipped_bit_in_one_image_is_found(tmp_path, cfg):
    path = tmp_path / "s"
    batch = photos(N)
    build(path, cfg, batch)
    file, start, length = payload(path, cfg, DAMAGED)
    flip_bit(file, start + length // 2)
    raw = cfg[1] == "none"
    assert_only_damaged(path, batch, DAMAGED, format_detects=not raw)
    # (c) without verify=True, raw pixels come back wrong (a .npy has no checksum of its own);
    # a PNG's chunk CRC catches the same flip by itself.
    with imgbench.open(path) as s:
        if raw:
            got = s[DAMAGED]
            assert got.shape == batch[DAMAGED].shape and bits_differing(got, batch[DAMAGED]) == 1
            assert bits_differing(s.read_many()[DAMAGED], batch[DAMAGED]) == 1
        else:
            with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
                s[DAMAGED]
        assert same(s[DAMAGED + 1], batch[DAMAGED + 1])


def test_valid_png_with_other_pixels_is_found_only_by_the_checksum(tmp_path, cfg):
    """Damage every format check passes (re-encoded, CRCs right): only the stored digest tells."""
    backend, compression = cfg
    if compression != "png":
        pytest.skip("PNG-specific: a raw member has no format checks to pass")
    path = tmp_path / "s"
    batch = smooth(N)
    build(path, cfg, batch)
    file, start, size = member(path, backend, DAMAGED)
    forged = png_with_flipped_pixel_bit(file.read_bytes()[start : start + size])
    if backend == "disk":
        file.write_bytes(forged)
    else:
        rewrite_tar_member(path, DAMAGED, forged)
    with imgbench.open(path) as s:  # verify=False: the forged image decodes cleanly
        got = s[DAMAGED]
        assert got.shape == batch[DAMAGED].shape and not same(got, batch[DAMAGED])
        assert int((got != batch[DAMAGED]).sum()) == 1
    assert_only_damaged(path, batch, DAMAGED, format_detects=False)


# ------------------------------------------------------------------ what is stored
def test_checksums_are_the_digests_and_survive_append(tmp_path, cfg):
    backend, compression = cfg
    path = tmp_path / "s"
    first = photos(4)
    build(path, cfg, first)
    # appended in two commits, with other dtypes and shapes (a ragged store)
    dtypes = [np.uint16] if compression == "png" else [np.uint16, np.int16, np.float32]
    extra = [sample((7, 5), dt, seed=10 + k) for k, dt in enumerate(dtypes)] + [sample((9, 4, 1), np.uint8, seed=3)]
    with imgbench.open(path, "a") as s:
        s.extend(extra[:2], labels=[100, 101])
        s.flush()
        s.extend(extra[2:], labels=list(range(102, 102 + len(extra) - 2)))
    everything = list(first) + extra
    extra_labels = [100, 101, *range(102, 102 + len(extra) - 2)]
    labels = [*build_labels(len(first)).tolist(), *extra_labels]
    expected = np.concatenate(
        [checksum.digests(first, build_labels(len(first))), checksum.digests(extra, extra_labels)]
    )
    assert np.array_equal(expected, checksum.digests(everything, labels))
    with imgbench.open(path, verify=True) as s:
        assert s.checksums.dtype == np.uint64 and np.array_equal(s.checksums, expected)
        for i, image in enumerate(everything):
            assert same(s[i], image)
        back = s.read_many()
        assert all(same(a, b) for a, b in zip(back, everything))
        assert s.labels.tolist() == labels
        twin = pickle.loads(pickle.dumps(s))  # a worker process's copy still verifies
        assert twin.verify and np.array_equal(twin.checksums, expected) and same(twin[5], everything[5])
    report = verify(path)
    assert report.ok and report.checksummed and report.images == len(everything)
    assert cli_verify(path).returncode == 0
    meta = record(path, backend)
    assert meta["checksum"] == "xxh3_64"
    # Plain tools read them: xxhash over the image's raw little-endian bytes, seeded with its label.
    with imgbench.open(path) as s:
        plain = [
            xxhash.xxh3_64_hexdigest(np.ascontiguousarray(s[i]).tobytes(), seed=labels[i] & 0xFFFFFFFFFFFFFFFF)
            for i in range(len(s))
        ]
    if backend == "disk":
        text = meta["image_checksums"]
        assert [text[16 * i : 16 * i + 16] for i in range(len(everything))] == plain
    else:
        assert meta["index"]["columns"][CHECKSUM] == "checksum"
        column = index_rows(path)[: meta["count"], CHECKSUM].view("<u8")
        assert [f"{v:016x}" for v in column.tolist()] == plain


def test_checksums_are_not_read_unless_verifying(tmp_path, cfg, monkeypatch):
    path = tmp_path / "s"
    batch = photos(6)
    build(path, cfg, batch)
    cls = DiskStore if cfg[0] == "disk" else TarStore

    def refuse(self):
        raise AssertionError("checksums were loaded by a read without verify=True")

    monkeypatch.setattr(cls, "_get_checksums", refuse)
    with imgbench.open(path) as s:
        assert same(s[3], batch[3]) and same(s.read_many(), batch) and same(s.read_many([5, 0]), batch[[5, 0]])
        assert s.labels.tolist() == (np.arange(6) * 2 + 1).tolist()


def test_killed_appender_leaves_old_images_with_their_digests(tmp_path, cfg):
    """Digests are committed with the images: a writer killed before its commit adds neither."""
    backend, _ = cfg
    path = tmp_path / "s"
    batch = photos(4)
    build(path, cfg, batch)
    killed = textwrap.dedent(
        """
        import os, sys, numpy as np, imgbench, imgbench.core.atomic
        s = imgbench.open(sys.argv[1], "a")
        s.extend(np.full((3, 16, 16, 3), 9, np.uint8), labels=np.zeros(3, int))
        imgbench.core.atomic.write_file = lambda *a, **k: os._exit(0)  # killed just before the commit record
        s.close()
        """
    )
    subprocess.run([sys.executable, "-c", killed, str(path)], check=True, timeout=120)
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 4 and np.array_equal(s.checksums, checksum.digests(batch, build_labels(4)))
        assert same(s.read_many(), batch) and s.labels.tolist() == build_labels(4).tolist()
    extra = photos(2, start=40)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[1, 2])
    with imgbench.open(path, verify=True) as s:
        both = np.concatenate([batch, extra])
        both_labels = [*build_labels(4).tolist(), 1, 2]
        assert np.array_equal(s.checksums, checksum.digests(both, both_labels)) and same(s.read_many(), both)
        assert s.labels.tolist() == both_labels
    assert verify(path).ok


# ------------------------------------------------------------------ damaged or missing digests
def test_missing_or_short_checksums_are_corrupt(tmp_path, cfg):
    backend, _ = cfg
    path = tmp_path / "s"
    batch = photos(N)
    build(path, cfg, batch)
    good = record(path, backend)
    if backend == "disk":
        text = good["image_checksums"]
        damages = {
            "missing": lambda m: m.pop("image_checksums"),
            "short": lambda m: m.__setitem__("image_checksums", text[:-16]),
            "long": lambda m: m.__setitem__("image_checksums", text + "0" * 16),
            "not hex": lambda m: m.__setitem__("image_checksums", "zz" * 8 * N),
            "not a string": lambda m: m.__setitem__("image_checksums", [1] * N),
        }
        for what, damage in damages.items():
            meta = json.loads(json.dumps(good))
            damage(meta)
            set_record(path, backend, meta)
            with imgbench.open(path) as s:
                assert same(s.read_many(), batch), what  # the images themselves are fine
                with pytest.raises(imgbench.CorruptStoreError, match="checksum"):
                    s.checksums
            with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError):
                s[0]
            report = verify(path)
            assert not report.ok and report.problems and not report.damaged, what
            assert cli_verify(path).returncode == 1
            with pytest.raises(imgbench.CorruptStoreError, match="checksums"):
                imgbench.open(path, "a")  # never append to a store whose digests are damaged
        set_record(path, backend, good)
    else:
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
        set_record(path, backend, meta)
        with pytest.raises(imgbench.CorruptStoreError, match="index columns"):
            imgbench.open(path)
        del meta["index"]
        set_record(path, backend, meta)
        with pytest.raises(imgbench.CorruptStoreError, match="index columns"):
            imgbench.open(path)
        set_record(path, backend, good)
        # A damaged digest is reported as that image's damage.
        rows = index_rows(path)
        rows[3, CHECKSUM] ^= 1
        rows.astype("<i8").tofile(path / INDEX)
        assert sorted(verify(path).damaged) == [3]
        rows[3, CHECKSUM] ^= 1
        rows.astype("<i8").tofile(path / INDEX)
    assert verify(path).ok


def test_store_written_without_checksums_reads_and_appends_without_them(tmp_path, cfg):
    """A store from before checksums (no "checksum" in its record) opens, reads, verifies and stays checksum-less."""
    backend, _ = cfg
    path = tmp_path / "s"
    batch = photos(3)
    build(path, cfg, batch)
    meta = record(path, backend)
    del meta["checksum"]
    if backend == "disk":
        del meta["image_checksums"]
    else:
        rows = index_rows(path)
        rows[:, CHECKSUM] = 0
        rows.astype("<i8").tofile(path / INDEX)
    set_record(path, backend, meta)
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), batch) and same(s[1], batch[1])
    report = verify(path)
    assert report.ok and not report.checksummed
    proc = cli_verify(path)
    assert proc.returncode == 0 and "no per-image checksums" in proc.stdout
    extra = photos(2, start=9)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[5, 6])
    meta = record(path, backend)
    assert "checksum" not in meta and "image_checksums" not in meta and meta["count"] == 5
    if backend == "tar":
        assert not index_rows(path)[:5, CHECKSUM].any()
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), np.concatenate([batch, extra]))
    assert verify(path).ok


def test_empty_store_has_an_empty_checksum_array(tmp_path, cfg):
    backend, compression = cfg
    path = tmp_path / "s"
    with imgbench.open(path, "w", backend=backend, compression=compression):
        pass
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 0 and s.checksums.shape == (0,) and s.checksums.dtype == np.uint64
    with imgbench.open(path, "a") as s:
        s.append(photos(1)[0])
    with imgbench.open(path, verify=True) as s:
        assert np.array_equal(s.checksums, checksum.digests(photos(1)))
    assert verify(path).ok and os.path.isdir(path)
