"""One kit per backend: what the conformance suite needs to know about a backend's files.

The tests in ``tests/contract/`` are written once and run on every backend in
``imgbench.backends()``. Most of them only use the public API; the few that must
damage or inspect what a backend stored (flip a bit inside image *i*, change a
stored label, read the stored digests with the format's own tools, bump the
format version) ask the backend's kit, defined here, in one place.

Adding a backend: register it (``imgbench/storage/``), then add a ``Kit``
subclass below and put it in ``KITS``. Until then every contract test of the
new backend fails with a message pointing here (never a silent skip), and
``test_every_registered_backend_has_a_kit`` names what is missing.

Layout knowledge only: every method reads or changes the files with plain
tools (json, numpy, lmdb, h5py, zarr), never with imgbench's own readers, so a
kit cannot agree with a bug in the backend.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import imgbench
from imgbench.storage import registry

from ..conftest import RAW_CAPABLE, dtypes_for


class Kit:
    """The per-backend part of the conformance suite; subclasses fill in the layout."""

    #: registered backend name
    name: str = ""
    #: path suffix that names the backend (``""``: the backend must be named on create)
    suffix: str = ""
    #: the default compression docs/design.md documents (the first of ``compressions``)
    default_compression: str = ""
    #: options for ``imgbench.open(..., "w")`` that keep each image's stored bytes apart from
    #: the others' (one image per chunk), so damage to one image's bytes damages only that image
    isolating_options: dict = {}
    #: (compression, level) pairs ``imgbench.open`` must refuse with an error naming the level
    bad_levels: list = []
    #: options that make one write produce many files written concurrently (test_full_disk.py)
    many_files_options: dict = {}
    #: with the format's own checks a flipped bit raises even without ``verify=True``
    #: (PNG chunk CRCs, zstd frame checksums, HDF5 Fletcher-32, zarr CRC-32C); per compression
    checked_compressions: frozenset = frozenset()
    #: the fuzz may damage any byte of any file; False: only ``fuzz_spans`` (a documented limit)
    fuzz_whole_files: bool = True
    #: the store is one file (else a directory)
    single_file: bool = False
    #: the stored labels carry a check of their own, so ``store.labels`` read without any image
    #: still refuses a damaged label under ``verify=True`` (else a strict xfail: a documented gap)
    labels_checked_alone: bool = False

    # -------------------------------------------------------------- generic
    @property
    def compressions(self) -> tuple[str, ...]:
        return registry.get(self.name).compressions

    def path(self, tmp_path: Path, name: str = "store") -> Path:
        return Path(tmp_path) / f"{name}{self.suffix}"

    def dtypes(self, compression: str) -> list[np.dtype]:
        return dtypes_for(compression)

    def format_detects(self, compression: str) -> bool:
        return compression in self.checked_compressions

    def names_damaged_image(self, compression: str, read: str) -> bool:
        """Whether a ``read_many`` that meets a damaged image names it: ``read`` is "bulk" (every
        image) or "batch" (given indices). Always when the checksum finds the damage; where the
        format's own check finds it first, as far as that check's error says."""
        return True

    def __repr__(self) -> str:
        return f"<kit {self.name}>"

    # -------------------------------------------------------------- layout: subclasses
    def damage_image(self, path: Path, index: int, compression: str) -> set[int]:
        """Flip ONE bit inside the stored (encoded) bytes of image ``index``; the images it damages.

        The bit lies in the image's payload (pixels, or the coded data of a compressed image),
        never in a header. The answer is ``{index}`` when the image's bytes are its own (always,
        for stores written with ``isolating_options``); where one chunk holds several images,
        every image whose bytes share that chunk.
        """
        raise NotImplementedError(f"{self.name}: damage_image")

    def set_label(self, path: Path, index: int, label: int) -> None:
        """Change the stored label of image ``index`` with the format's plain tool (no imgbench)."""
        raise NotImplementedError(f"{self.name}: set_label")

    def flip_label(self, path: Path, index: int) -> None:
        """XOR the stored label of image ``index`` with 1 as silent damage would (bytes, not an API)."""
        raise NotImplementedError(f"{self.name}: flip_label")

    def stored_digests(self, path: Path) -> list[int] | None:
        """The per-image digests as stored, read with plain tools; None when the store keeps none."""
        raise NotImplementedError(f"{self.name}: stored_digests")

    def set_version(self, path: Path, version: int) -> None:
        """Rewrite the format version in the store's own metadata."""
        raise NotImplementedError(f"{self.name}: set_version")

    def expected_files(self, n: int) -> int:
        """Files ``imgbench.disk_usage`` counts for ``n`` small unlabelled images of one shape."""
        raise NotImplementedError(f"{self.name}: expected_files")

    def fuzz_spans(self, path: Path) -> list[tuple[str, int, int]]:
        """(file, start, length) the fuzz may damage when ``fuzz_whole_files`` is False."""
        raise NotImplementedError(f"{self.name}: fuzz_spans")

    # PNG-capable backends: the encoded bytes of one image
    def encoded(self, path: Path, index: int) -> bytes:
        raise NotImplementedError(f"{self.name}: encoded")

    def replace_encoded(self, path: Path, index: int, blob: bytes) -> None:
        """Store ``blob`` as image ``index``'s encoded bytes, keeping every container check valid."""
        raise NotImplementedError(f"{self.name}: replace_encoded")


# ------------------------------------------------------------------ shared byte-level helpers
def flip_bit(file: Path, offset: int, mask: int = 0x10) -> None:
    """XOR one byte of ``file`` with ``mask`` (one bit), in place."""
    with open(file, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        assert len(byte) == 1, f"{file}: offset {offset} is past the end"
        f.seek(offset)
        f.write(bytes([byte[0] ^ mask]))


def npy_header_len(data: bytes) -> int:
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(fp)
    return fp.tell()


def png_chunks(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset of the chunk's data, type, data) of every chunk of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos + 8, data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def encoded_payload(data: bytes, compression: str) -> tuple[int, int]:
    """(start, length) of the pixel payload inside one encoded image: after the .npy header, or PNG IDAT data."""
    if compression == "none":
        skip = npy_header_len(data)
        return skip, len(data) - skip
    if compression != "png":  # the image codecs: the middle half of the codestream, past its headers
        return len(data) // 4, len(data) // 2
    offset, _, body = next(c for c in png_chunks(data) if c[1] == b"IDAT")
    return offset, len(body)


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


def _read_json(file: Path) -> dict:
    return json.loads(Path(file).read_text())


def _write_json(file: Path, meta) -> None:
    Path(file).write_text(json.dumps(meta))


# ================================================================== disk
class DiskKit(Kit):
    name = "disk"
    default_compression = "png"
    many_files_options = {"threads": 4}
    bad_levels = [("png", 10), ("png", -1), ("jpegxl", 0), ("jpegxl", 10), ("htj2k", 1)]
    checked_compressions = frozenset({"png", "lerc"})  # PNG chunk CRCs, LERC's Fletcher-32

    @staticmethod
    def sidecar(path: Path) -> Path:
        from imgbench.storage.disk import SIDECAR

        return Path(path) / SIDECAR

    def record(self, path: Path) -> dict:
        return _read_json(self.sidecar(path))

    def set_record(self, path: Path, meta: dict) -> None:
        _write_json(self.sidecar(path), meta)

    def image_file(self, path: Path, index: int) -> Path:
        files = [p for p in Path(path).iterdir() if p.name.startswith(f"{index:08d}.")]
        assert len(files) == 1, files
        return files[0]

    def damage_image(self, path, index, compression):
        file = self.image_file(path, index)
        start, length = encoded_payload(file.read_bytes(), compression)
        flip_bit(file, start + length // 2)
        return {index}

    def set_label(self, path, index, label):
        meta = self.record(path)
        meta["image_labels"][index] = label
        self.set_record(path, meta)

    def flip_label(self, path, index):
        meta = self.record(path)
        meta["image_labels"][index] ^= 1
        self.set_record(path, meta)

    def stored_digests(self, path):
        meta = self.record(path)
        if "checksum" not in meta:
            assert "image_checksums" not in meta
            return None
        assert meta["checksum"] == "xxh3_64"
        text = meta["image_checksums"]
        assert len(text) == 16 * meta["count"]
        return [int(text[16 * i : 16 * i + 16], 16) for i in range(meta["count"])]

    def set_version(self, path, version):
        meta = self.record(path)
        meta["version"] = version
        self.set_record(path, meta)

    def expected_files(self, n):
        return n + 1  # one file per image and the sidecar

    def encoded(self, path, index):
        return self.image_file(path, index).read_bytes()

    def replace_encoded(self, path, index, blob):
        self.image_file(path, index).write_bytes(blob)


# ================================================================== tar
class TarKit(Kit):
    name = "tar"
    default_compression = "png"
    many_files_options = {"threads": 4, "shard_bytes": 1 << 19}
    bad_levels = [("png", 10), ("jpegxl", 10), ("jpegls", 1)]
    checked_compressions = frozenset({"png", "lerc"})

    @staticmethod
    def mod():
        from imgbench.storage import tar

        return tar

    def record(self, path: Path) -> dict:
        return _read_json(Path(path) / self.mod().COMMIT)

    def set_record(self, path: Path, meta: dict) -> None:
        _write_json(Path(path) / self.mod().COMMIT, meta)

    def index_rows(self, path: Path) -> np.ndarray:
        tar = self.mod()
        return np.fromfile(Path(path) / tar.INDEX, "<i8").reshape(-1, len(tar.INDEX_COLUMNS))

    def write_index(self, path: Path, rows: np.ndarray) -> None:
        rows.astype("<i8").tofile(Path(path) / self.mod().INDEX)

    def column(self, name: str) -> int:
        return list(self.mod().INDEX_COLUMNS).index(name)

    def member(self, path: Path, index: int) -> tuple[Path, int, int]:
        """The shard holding image ``index`` and the byte range of its member's data (from the index)."""
        meta = self.record(path)
        row = self.index_rows(path)[index]
        shard = meta["shards"][int(row[self.column("shard")])]["name"]
        return Path(path) / shard, int(row[self.column("offset")]), int(row[self.column("size")])

    def damage_image(self, path, index, compression):
        file, offset, size = self.member(path, index)
        start, length = encoded_payload(file.read_bytes()[offset : offset + size], compression)
        flip_bit(file, offset + start + length // 2)
        return {index}

    def set_label(self, path, index, label):
        rows = self.index_rows(path)
        rows[index, self.column("label")] = label
        self.write_index(path, rows)

    def flip_label(self, path, index):
        rows = self.index_rows(path)
        rows[index, self.column("label")] ^= 1
        self.write_index(path, rows)

    def stored_digests(self, path):
        meta = self.record(path)
        column = self.index_rows(path)[: meta["count"], self.column("checksum")].view("<u8")
        if "checksum" not in meta:
            assert not column.any(), "a store without checksums keeps the column zero"
            return None
        assert meta["checksum"] == "xxh3_64"
        assert meta["index"]["columns"][self.column("checksum")] == "checksum"
        return [int(v) for v in column]

    def set_version(self, path, version):
        meta = self.record(path)
        meta["version"] = version
        self.set_record(path, meta)

    def expected_files(self, n):
        return 3  # commit record, index, one shard

    def encoded(self, path, index):
        file, offset, size = self.member(path, index)
        return file.read_bytes()[offset : offset + size]

    def replace_encoded(self, path, index, blob):
        """``blob`` in place of image ``index``'s member as a well-formed tar member (header, index size updated)."""
        file, offset, size = self.member(path, index)
        assert -(-len(blob) // 512) <= -(-size // 512), "the new member must fit the old one's blocks"
        data = bytearray(file.read_bytes())
        name = data[offset - 512 : offset - 412].rstrip(b"\0")
        data[offset - 512 : offset] = self.mod().member_header(name, len(blob))
        padded = -(-size // 512) * 512
        data[offset : offset + padded] = blob + bytes(padded - len(blob))
        file.write_bytes(bytes(data))
        rows = self.index_rows(path)
        rows[index, self.column("size")] = len(blob)
        self.write_index(path, rows)


# ================================================================== lmdb
def lmdb_leaf_pages(data: bytes, psize: int = 4096) -> list[tuple[int, bytes]]:
    """(page number, first key) of the LMDB leaf pages whose keys are 8 bytes (the images database)."""
    out = []
    for pg in range(2, len(data) // psize):
        off = pg * psize
        pgno, _pad, flags, lower, _upper = struct.unpack_from("<QHHHH", data, off)
        if pgno != pg or flags & 0x07 != 0x02 or lower < 18:
            continue
        ptr = struct.unpack_from("<H", data, off + 16)[0]
        _lo, _hi, _nflags, ksize = struct.unpack_from("<HHHH", data, off + ptr)
        if ksize == 8:
            out.append((pg, data[off + ptr + 8 : off + ptr + 16]))
    return out


class LmdbKit(Kit):
    name = "lmdb"
    suffix = ".lmdb"
    default_compression = "none"
    many_files_options = {"threads": 4}
    bad_levels = [("zstd", 0), ("zstd", 23), ("png", 2.5), ("jpegxl", 0), ("lerc", 1)]
    checked_compressions = frozenset({"png", "zstd", "lerc"})
    #: LMDB trusts its B-tree pages (no page checksums): damage to page headers can abort the
    #: reader, a documented limit pinned by strict xfails in tests/backends/test_lmdb.py; the
    #: fuzz damages the stored values, which imgbench must always catch
    fuzz_whole_files = False

    @staticmethod
    def mod():
        from imgbench.storage import lmdb as lmdb_backend

        return lmdb_backend

    @staticmethod
    def env(path: Path, write: bool = False):
        import lmdb

        if write:
            return lmdb.open(str(path), max_dbs=4)
        return lmdb.open(str(path), readonly=True, lock=False, max_dbs=4)

    def get(self, path: Path, key: bytes, db: bytes | None = None) -> bytes | None:
        env = self.env(path)
        try:
            handle = env.open_db(db, create=False) if db else None
            with env.begin() as txn:
                value = txn.get(key, db=handle) if handle else txn.get(key)
                return None if value is None else bytes(value)
        finally:
            env.close()

    def put(self, path: Path, key: bytes, value: bytes | None, db: bytes | None = None) -> None:
        env = self.env(path, write=True)
        try:
            handle = env.open_db(db) if db else None
            with env.begin(write=True) as txn:
                kw = {"db": handle} if handle else {}
                if value is None:
                    txn.delete(key, **kw)
                else:
                    txn.put(key, value, **kw)
        finally:
            env.close()

    def image_value(self, path: Path, index: int) -> bytes:
        return self.get(path, struct.pack(">Q", index), db=b"images")

    def meta(self, path: Path) -> dict:
        return json.loads(self.get(path, self.mod().META_KEY))

    def damage_image(self, path, index, compression):
        header = self.mod().HEADER.size
        value = self.image_value(path, index)
        payload = value[header:]
        if compression == "png":  # inside the first IDAT chunk's deflate data
            at = payload.index(b"IDAT")
            (length,) = struct.unpack(">I", payload[at - 4 : at])
            inside = at + 4 + length // 2
        else:  # none: the raw pixels; zstd: the middle of the frame (past its header, before its checksum)
            inside = len(payload) // 2
        data = (Path(path) / "data.mdb").read_bytes()
        at = data.find(value)
        assert at >= 0 and data.find(value, at + 1) == -1, "the value must occur exactly once in data.mdb"
        flip_bit(Path(path) / "data.mdb", at + header + inside)
        return {index}

    def _labels_key(self, chunk: int = 0) -> bytes:
        key = self.mod().LABELS_PREFIX + b"%08d" % chunk
        assert key == b"~imgbench/labels/%08d" % chunk
        return key

    def set_label(self, path, index, label):
        key = self._labels_key(0)
        labels = np.frombuffer(self.get(path, key), "<i8").copy()
        labels[index] = label
        self.put(path, key, labels.tobytes())

    def flip_label(self, path, index):
        """In data.mdb's bytes: the live labels value and any stale copy of it on a free page."""
        old = self.get(path, self._labels_key(0))
        data = bytearray((Path(path) / "data.mdb").read_bytes())
        at = data.find(old)
        assert at >= 0
        while at >= 0:
            data[at + 8 * index] ^= 1
            at = data.find(old, at + 1)
        (Path(path) / "data.mdb").write_bytes(bytes(data))

    def stored_digests(self, path):
        meta = self.meta(path)
        prefix = self.mod().CHECKSUMS_PREFIX
        if "checksum" not in meta:
            assert self.get(path, prefix + b"00000000") is None
            return None
        assert meta["checksum"] == "xxh3_64"
        raw, chunk = b"", 0
        while (part := self.get(path, prefix + b"%08d" % chunk)) is not None:
            raw += part
            chunk += 1
        digests = np.frombuffer(raw, "<u8").tolist()
        assert len(digests) == meta["count"]
        return digests

    def set_version(self, path, version):
        meta = self.meta(path)
        meta["version"] = version
        self.put(path, self.mod().META_KEY, json.dumps(meta).encode())

    def expected_files(self, n):
        return 2  # data.mdb, lock.mdb

    def fuzz_spans(self, path):
        """Every stored image value (header + payload) in data.mdb."""
        env = self.env(path)
        try:
            db = env.open_db(b"images", create=False)
            with env.begin() as txn:
                values = [bytes(v) for _k, v in txn.cursor(db=db)]
        finally:
            env.close()
        data = (Path(path) / "data.mdb").read_bytes()
        spans = [("data.mdb", at, len(v)) for v in values if (at := data.find(v)) >= 0]
        assert spans
        return spans

    def encoded(self, path, index):
        return self.image_value(path, index)[self.mod().HEADER.size :]

    def replace_encoded(self, path, index, blob):
        value = self.image_value(path, index)
        self.put(path, struct.pack(">Q", index), value[: self.mod().HEADER.size] + blob, db=b"images")


# ================================================================== npy
class NpyKit(Kit):
    name = "npy"
    default_compression = "none"

    @staticmethod
    def mod():
        from imgbench.storage import npy

        return npy

    def record(self, path: Path) -> dict:
        return _read_json(Path(path) / self.mod().COMMIT)

    def rows(self, path: Path) -> np.ndarray:
        return np.fromfile(Path(path) / self.mod().INDEX, dtype=self.mod().INDEX_DTYPE)

    def write_rows(self, path: Path, rows: np.ndarray) -> None:
        rows.tofile(Path(path) / self.mod().INDEX)

    def damage_image(self, path, index, compression):
        row = self.rows(path)[index]
        h, w, c = int(row["h"]), int(row["w"]), int(row["c"]) or 1
        nbytes = h * w * c * {1: 1, 2: 2, 3: 2, 4: 4}[int(row["dtype"])]
        flip_bit(Path(path) / self.mod().DATA, int(row["offset"]) + nbytes // 2)
        return {index}

    def set_label(self, path, index, label):
        rows = self.rows(path)
        rows["label"][index] = label
        self.write_rows(path, rows)

    def flip_label(self, path, index):
        rows = self.rows(path)
        rows[index]["label"] ^= 1
        self.write_rows(path, rows)

    def stored_digests(self, path):
        meta = self.record(path)
        column = self.rows(path)["checksum"][: meta["count"]]
        if "checksum" not in meta:
            assert column.tolist() == [0] * meta["count"]
            return None
        assert meta["checksum"] == "xxh3_64"
        return [int(v) for v in column]

    def set_version(self, path, version):
        meta = self.record(path)
        meta["version"] = version
        _write_json(Path(path) / self.mod().COMMIT, meta)

    def expected_files(self, n):
        return 3  # commit record, data.bin, index.bin


# ================================================================== hdf5
class Hdf5Kit(Kit):
    name = "hdf5"
    suffix = ".h5"
    single_file = True
    default_compression = "none"
    isolating_options = {"chunks": 1}
    bad_levels = [("gzip", 10), ("zstd", 99), ("lzf", 1)]
    checked_compressions = frozenset({"gzip", "lzf", "zstd"})  # each with Fletcher-32

    def names_damaged_image(self, compression, read):
        # a filter failure while reading the whole dataset at once cannot say which image it was in
        return read == "batch" or not self.format_detects(compression)

    @staticmethod
    def file(path: Path, mode: str = "r"):
        import h5py

        return h5py.File(path, mode)

    def damage_image(self, path, index, compression):
        with self.file(path) as f:
            meta = json.loads(f.attrs["imgbench"])
            count = meta["count"]
            if meta["layout"] == "uniform":
                ds = f["images"]
                per = ds.chunks[0]
                info = ds.id.get_chunk_info_by_coord((index // per * per,) + (0,) * (ds.ndim - 1))
                first = index // per * per
                if ds.compression is None:
                    nbytes = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
                    offset, damaged = info.byte_offset + (index % per) * nbytes + nbytes // 2, {index}
                else:
                    offset = info.byte_offset + (info.size - 4) // 2  # inside the payload, not the Fletcher-32
                    damaged = set(range(first, min(first + per, count)))
            else:
                offsets, ds = f["offsets"][: count + 1], f["data"]
                middle = int(offsets[index] + offsets[index + 1]) // 2
                chunk = ds.chunks[0]
                lo = middle // chunk * chunk
                info = ds.id.get_chunk_info_by_coord((lo,))
                if ds.compression is None:
                    offset, damaged = info.byte_offset + middle % chunk, {index}
                else:  # the whole chunk fails its filter: every image with bytes in it
                    offset = info.byte_offset + (info.size - 4) // 2
                    damaged = {j for j in range(count) if offsets[j] < lo + chunk and offsets[j + 1] > lo}
        flip_bit(path, offset)
        assert index in damaged
        return damaged

    def set_label(self, path, index, label):
        with self.file(path, "r+") as f:
            f["labels"][index] = label

    def flip_label(self, path, index):
        with self.file(path, "r+") as f:
            f["labels"][index] ^= 1

    def stored_digests(self, path):
        with self.file(path) as f:
            meta = json.loads(f.attrs["imgbench"])
            if "checksum" not in meta:
                assert "checksums" not in f
                return None
            assert meta["checksum"] == "xxh3_64"
            return [int(v) for v in f["checksums"][: meta["count"]]]

    def set_version(self, path, version):
        with self.file(path, "r+") as f:
            meta = json.loads(f.attrs["imgbench"])
            meta["version"] = version
            f.attrs["imgbench"] = json.dumps(meta)

    def expected_files(self, n):
        return 1


# ================================================================== zarr
class ZarrKit(Kit):
    name = "zarr"
    suffix = ".zarr"
    default_compression = "none"
    many_files_options = {"shard_images": 2}
    isolating_options = {"chunk_images": 1}
    bad_levels = [("zstd", 0), ("zstd", 23), ("blosc", -1), ("blosc", 10), ("blosc", 2.5), ("none", 1)]
    checked_compressions = frozenset({"none", "zstd", "blosc"})  # every chunk carries a CRC-32C
    labels_checked_alone = True  # the labels array is zstd + CRC-32C

    def names_damaged_image(self, compression, read):
        return not self.format_detects(compression)  # zarr's CRC error names the chunk, not the image

    @staticmethod
    def record(path: Path) -> dict:
        return _read_json(Path(path) / "zarr.json")["attributes"]["imgbench"]

    @staticmethod
    def chunk_location(path: Path, name: str, chunk: int) -> tuple[Path, int, int]:
        """(shard file, byte offset, stored bytes) of inner chunk ``chunk`` of array ``name``, from the shard index."""
        import zarr

        arr = zarr.open_array(str(Path(path) / name), mode="r")
        per_chunk, per_shard = int(arr.chunks[0]), int(arr.shards[0])
        chunks_per_shard = per_shard // per_chunk
        shard, within = divmod(chunk * per_chunk, per_shard)
        key = arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))
        shard_path = Path(path) / name / key
        raw = shard_path.read_bytes()
        index = np.frombuffer(raw[len(raw) - 16 * chunks_per_shard - 4 : -4], "<u8").reshape(-1, 2)
        offset, nbytes = index[within // per_chunk]
        assert offset != 2**64 - 1, "chunk not written"
        return shard_path, int(offset), int(nbytes)

    def damage_image(self, path, index, compression):
        import zarr

        meta = self.record(path)
        count, ucount = meta["count"], meta["uniform_count"]
        if index < ucount:
            arr = zarr.open_array(str(Path(path) / "images"), mode="r")
            per = int(arr.chunks[0])
            chunk = index // per
            shard, offset, nbytes = self.chunk_location(path, "images", chunk)
            damaged = set(range(chunk * per, min((chunk + 1) * per, ucount)))
            if compression == "none":  # the raw pixels of the chunk's images, then their CRC-32C
                assert nbytes == int(np.prod(arr.chunks)) * arr.dtype.itemsize + 4
        else:
            data = zarr.open_array(str(Path(path) / "data"), mode="r")
            offsets = zarr.open_array(str(Path(path) / "offsets"), mode="r")[: count - ucount + 1]
            j = index - ucount
            per = int(data.chunks[0])
            chunk = int(offsets[j] + offsets[j + 1]) // 2 // per
            lo, hi = chunk * per, (chunk + 1) * per
            shard, offset, nbytes = self.chunk_location(path, "data", chunk)
            damaged = {ucount + k for k in range(count - ucount) if offsets[k] < hi and offsets[k + 1] > lo}
        flip_bit(shard, offset + (nbytes - 4) // 2)  # inside the chunk, not its CRC-32C
        assert index in damaged
        return damaged

    def set_label(self, path, index, label):
        import zarr

        zarr.open_array(str(Path(path) / "labels"), mode="r+")[index] = label

    def flip_label(self, path, index):
        """zarr's labels are zstd + CRC-32C: a flipped bit in the labels shard (the chunk's CRC catches it)."""
        shard = next(p for p in (Path(path) / "labels").iterdir() if p.name.startswith("c."))
        data = bytearray(shard.read_bytes())
        data[len(data) // 3] ^= 0x01
        shard.write_bytes(bytes(data))

    def stored_digests(self, path):
        import zarr

        meta = self.record(path)
        if "checksum" not in meta:
            assert not (Path(path) / "checksums").exists()
            return None
        assert meta["checksum"] == "xxh3_64"
        stored = zarr.open_array(str(Path(path) / "checksums"), mode="r")[: meta["count"]]
        assert stored.dtype == np.dtype("<u8")
        return [int(v) for v in stored]

    def set_version(self, path, version):
        doc = _read_json(Path(path) / "zarr.json")
        doc["attributes"]["imgbench"]["version"] = version
        _write_json(Path(path) / "zarr.json", doc)

    def expected_files(self, n):
        return 5  # zarr.json of the group, images and checksums, one shard of each


KITS: dict[str, Kit] = {kit.name: kit for kit in (DiskKit(), TarKit(), LmdbKit(), NpyKit(), Hdf5Kit(), ZarrKit())}


def kit_for(name: str) -> Kit:
    """The kit of a registered backend; a backend without one fails its contract tests (no skip)."""
    if name not in KITS:
        pytest.fail(
            f"backend {name!r} is registered but has no conformance kit: add a Kit subclass for it to "
            "tests/contract/backends.py (see its docstring) and put it in KITS",
            pytrace=False,
        )
    return KITS[name]


BACKENDS = imgbench.backends()
CONFIGS = [(b, c) for b in BACKENDS for c in registry.get(b).compressions]


def config_id(cfg: tuple[str, str]) -> str:
    return f"{cfg[0]}-{cfg[1]}"
