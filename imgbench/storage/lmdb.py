"""LMDB backend: one key per image in a memory-mapped B-tree, for the fastest crash-safe random access.

Every write is one transaction (images, labels, checksums and the new count), so
readers in other processes see whole commits only. Layout: docs/formats/lmdb.md.
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
from itertools import islice
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from imgbench.core import codecs, mapadvice, parallel
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_IDS, dtype_from_code, dtype_from_id
from imgbench.core.store import Store, stack_if_uniform
from imgbench.storage import lmdb_env

META_KEY = b"~imgbench/meta"
LABELS_PREFIX = b"~imgbench/labels/"
CHECKSUMS_PREFIX = b"~imgbench/checksums/"
LABEL_CHUNK = 1 << 16  # entries per labels or checksums key
HEADER = struct.Struct("<2sBBBBH3I")
MAGIC = b"IB"
HEADER_VERSION = 1
CODEC_IDS = {"none": 0, "png": 1, "zstd": 2, "jpegls": 3, "htj2k": 4, "jpegxl": 5, "lerc": 6}
_CODEC_BY_ID = {v: k for k, v in CODEC_IDS.items()}
_MIN_MAP = 64 << 20
_ENCODE_BYTES = 64 << 20  # raw image bytes encoded per slice of a write


def _key(i: int) -> bytes:
    return struct.pack(">Q", i)


def _labels_key(chunk: int) -> bytes:
    return LABELS_PREFIX + b"%08d" % chunk


def _checksums_key(chunk: int) -> bytes:
    return CHECKSUMS_PREFIX + b"%08d" % chunk


# LMDB errors while reading that say nothing about the store's bytes.
_RESOURCE_ERRORS = (lmdb.ReadersFullError, lmdb.TlsFullError, lmdb.MemoryError)


def _lmdb_reads(method):
    """Turn an ``lmdb.Error`` escaping a read (MDB_CORRUPTED, MDB_PAGE_NOTFOUND ...) into ours.

    A try block costs nothing on the fast path; only the exception is translated.
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except _RESOURCE_ERRORS as exc:
            raise ImgbenchError(f"reading {self.path} failed: {type(exc).__name__}: {exc}") from None
        except lmdb.Error as exc:
            raise CorruptStoreError(
                f"{self.path}: the LMDB environment is damaged ({type(exc).__name__}: {exc})"
            ) from None

    return wrapper


def _header(codec_id: int, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    dims = tuple(shape) + (0,) * (3 - len(shape))
    return HEADER.pack(MAGIC, HEADER_VERSION, codec_id, DTYPE_IDS[dtype], len(shape), 0, *dims)


class LMDBStore(Store):
    name = "lmdb"
    compressions = ("none", "png", "zstd", "jpegls", "htj2k", "jpegxl", "lerc")
    stores_checksums = True
    option_defaults = {
        "map_size": None,  # bytes to reserve at first; grows on demand either way
        "readahead": "auto",  # OS readahead on the map: "auto" = by access pattern, True (scans), False (random)
        "sync": True,  # fsync on every commit in mode 'a' (mode 'w' syncs once before publishing)
        "lock": True,  # False for read-only media (then no writer may run concurrently)
        "max_readers": 126,
        "threads": None,  # codec threads for png/zstd (None = all cores)
    }

    def _check_options(self) -> None:
        if self.options["readahead"] not in (True, False, "auto"):
            raise UnsupportedError(f"readahead must be True, False or 'auto', got {self.options['readahead']!r}")
        ms = self.options["map_size"]
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0):
            raise UnsupportedError(f"map_size must be a positive number of bytes, got {ms!r}")

    def _init_handles(self) -> None:
        self._env: lmdb.Environment | None = None
        self._db = None
        self._advice: tuple[int, int, int] | None = None  # (map address, map size, advice) last given
        self._uniform: tuple[tuple[int, ...], np.dtype] | None | bool = None

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / "data.mdb").is_file()

    remote_refusal = "LMDB needs a local memory-mapped file (and a lock file), which an object store cannot give"

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is not None and "data.mdb" in probe.names

    # ------------------------------------------------------------ opening
    def _codec(self) -> codecs.Codec:
        return codecs.get(self.compression, self.compressions, self.name)

    def _read_meta(self, txn: lmdb.Transaction) -> dict[str, Any]:
        raw = txn.get(META_KEY)
        if raw is None:
            raise CorruptStoreError(f"{self.path} is an LMDB environment without imgbench metadata (key {META_KEY!r})")
        try:
            meta = json.loads(bytes(raw))
        except ValueError as exc:
            raise CorruptStoreError(f"{self.path}: imgbench metadata is not valid JSON ({exc})") from None
        uniform = meta.get("uniform") if isinstance(meta, dict) else None
        if uniform:
            try:
                self._uniform = (tuple(int(d) for d in uniform["shape"]), dtype_from_code(uniform["dtype"]))
            except (KeyError, TypeError, ValueError):
                raise CorruptStoreError(f"{self.path}: metadata 'uniform' entry is malformed") from None
            shape = self._uniform[0]
            if (
                len(shape) not in (2, 3)
                or min(shape) < 1
                or max(shape) > 0xFFFFFFFF
                or (len(shape) == 3 and shape[2] > 4)
            ):
                raise CorruptStoreError(f"{self.path}: metadata 'uniform' shape {shape} is impossible")
        else:
            self._uniform = False if isinstance(meta, dict) and meta.get("count") else None
        return meta

    def _check_not_truncated(self, env: lmdb.Environment, where: Path) -> None:
        """Refuse a data file shorter than its own last page: touching it would SIGBUS."""
        info, psize = env.info(), env.stat()["psize"]
        need = (info["last_pgno"] + 1) * psize
        have = os.path.getsize(where / "data.mdb")
        if have < need:
            raise CorruptStoreError(
                f"{where}/data.mdb is truncated: {have} bytes, but its last page ends at byte {need}"
            )

    def _open_env(self, target: Path, readonly: bool, **kw: Any) -> lmdb.Environment:
        return lmdb_env.acquire(
            target, readonly, lock=self.options["lock"], readahead=self.options["readahead"] is not False,
            max_readers=self.options["max_readers"], **kw,
        )

    def _open_existing(self, target: Path, readonly: bool, **kw: Any) -> dict[str, Any]:
        env = self._open_env(target, readonly=readonly, **kw)
        try:
            self._check_not_truncated(env, target)
            try:
                with env.begin(buffers=True) as txn:
                    meta = self._read_meta(txn)
            except lmdb.Error as exc:
                raise CorruptStoreError(f"{target}: cannot read the imgbench metadata: {exc}") from None
            try:
                self._db = env.open_db(b"images", create=False)
            except lmdb.Error:
                raise CorruptStoreError(f"{target}: the 'images' database is missing") from None
            self._check_meta_against_data(env, meta, target)
        except BaseException:
            lmdb_env.release(env)
            raise
        self._env = env
        return meta

    def _check_meta_against_data(self, env: lmdb.Environment, meta: Any, target: Path) -> None:
        """The metadata's count and uniform shape agree with what is stored, in O(1), before either
        sizes a loop or an allocation (a count of 10**12 would otherwise cost minutes in ``labels``)."""
        count = meta.get("count") if isinstance(meta, dict) else None
        if not isinstance(count, int) or count <= 0:
            return  # check_meta reports a bad count; an empty store has nothing to compare
        try:
            with env.begin(buffers=True) as txn:
                last = txn.get(_key(count - 1), db=self._db) if count <= 1 << 63 else None
                first = txn.get(_key(0), db=self._db)
                head = HEADER.unpack_from(first) if first is not None and len(first) >= HEADER.size else None
        except lmdb.Error as exc:
            raise CorruptStoreError(f"{target}: cannot read the images database: {exc}") from None
        if last is None:
            # (A missing image in the middle is reported when it is read: the others stay readable.)
            raise CorruptStoreError(f"{target}: metadata records {count} images, but image {count - 1} is not stored")
        if self._uniform and head is not None:
            shape, dtype = self._uniform
            _, _, _, did, ndim, _, h, w, c = head
            if ndim != len(shape) or (h, w, c)[:ndim] != shape or did != DTYPE_IDS.get(dtype):
                raise CorruptStoreError(
                    f"{target}: metadata says every image is {shape} {dtype}, image 0's header disagrees"
                )

    def _open_reader(self) -> dict[str, Any]:
        # Open read-write where we may (we never write as a reader): LMDB allows one
        # environment per process, and this lets an appender in the same process
        # share it. Read-only media get a read-only environment.
        writable = os.access(self.path, os.W_OK) and os.access(self.path / "data.mdb", os.W_OK)
        return self._open_existing(self.path, readonly=not writable)

    def _open_appender(self, target: Path) -> dict[str, Any]:
        meta = self._open_existing(target, readonly=False, sync=self.options["sync"], metasync=self.options["sync"])
        if self.options["map_size"] and self._env.info()["map_size"] < self.options["map_size"]:
            self._env.set_mapsize(self.options["map_size"])
        return meta

    def _create(self, target: Path) -> None:
        # The temporary store is invisible until published, so commits need not
        # sync; one sync happens before publishing.
        self._env = self._open_env(
            target, readonly=False, create=True, map_size=self.options["map_size"] or _MIN_MAP, sync=False,
            metasync=False,
        )
        self._db = self._env.open_db(b"images", create=True)

    # ------------------------------------------------------------ writing
    def _encode(self, images: np.ndarray | list[np.ndarray]) -> list[bytes] | list[memoryview]:
        codec, level, cid = self._codec(), self.level, CODEC_IDS[self.compression]
        if isinstance(images, np.ndarray) and self.compression == "none":
            # One header for all, payload rows copied in one numpy operation.
            n = len(images)
            hdr = np.frombuffer(_header(cid, images.dtype, images.shape[1:]), dtype=np.uint8)
            rows = np.empty((n, HEADER.size + images[0].nbytes), dtype=np.uint8)
            rows[:, : HEADER.size] = hdr
            rows[:, HEADER.size :] = images.reshape(n, -1).view(np.uint8)
            # Slices of one flat memoryview: LMDB copies them ~2x faster than
            # per-row views through numpy's buffer protocol.
            flat, width = memoryview(rows.reshape(-1)), rows.shape[1]
            return [flat[o : o + width] for o in range(0, n * width, width)]

        def one(image: np.ndarray) -> bytes:
            return _header(cid, image.dtype, image.shape) + codec.encode(image, level)

        return parallel.map_items(one, images, self.options["threads"])

    def _reserve_map(self, images: np.ndarray | list[np.ndarray]) -> None:
        """Grow the map before a write so that it fits in one go.

        A full map aborts the transaction and the whole write is redone, so a
        large first write into the small initial map would otherwise be redone
        several times (64 -> 128 -> 256 MB ...). The map is address space, not
        disk: LMDB only extends the file by the pages it writes. The estimate
        bounds each image by its raw size (compressed codecs only shrink it,
        bar a few header bytes) rounded up to whole pages.
        """
        psize = self._env.stat()["psize"]
        info = self._env.info()
        if isinstance(images, np.ndarray):
            sizes = np.full(len(images), images[0].nbytes if len(images) else 0, np.int64)
        else:
            sizes = np.fromiter((im.nbytes for im in images), np.int64, len(images))
        sizes += HEADER.size + 64
        pages = np.where(sizes > psize // 2, -(-(sizes + 16) // psize), 0).sum() + (
            2 * sizes[sizes <= psize // 2].sum() // psize + 1
        )
        need = (info["last_pgno"] + 1 + int(pages) * 5 // 4 + 256) * psize
        if need > info["map_size"]:
            self._env.set_mapsize(max(need, 2 * info["map_size"]) if need < 2 * info["map_size"] else need)

    def _txn(self, work, nbytes: int = 0) -> None:
        """Run ``work(txn)`` in one write transaction (of about ``nbytes``), growing the map when it is full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    work(txn)
                return
            except lmdb.MapFullError:
                size = self._env.info()["map_size"]
                self._env.set_mapsize(size * 2)
            except lmdb.Error as exc:
                raise self._write_failed(exc, nbytes) from None

    def _write_failed(self, exc: BaseException, nbytes: int = 0) -> ImgbenchError:
        """A failed LMDB write as one line. LMDB reports a full disk at commit as ``mdb_txn_commit:
        Input/output error`` (its page writes lose the errno), so an I/O error with less free space than
        the transaction needed is called what it is."""
        text = str(exc)
        full = "No space left on device" in text
        if not full and "Input/output error" in text:
            try:
                vfs = os.statvfs(self.path.parent)
                full = vfs.f_bavail * vfs.f_frsize < nbytes + (1 << 20)
            except OSError:
                pass
        if full:
            return ImgbenchError(
                f"cannot write to {self.path}: no space left on device; nothing of this write was stored "
                "(earlier commits are kept); free some space and write again"
            )
        return ImgbenchError(f"writing to {self.path} failed: {' '.join(text.split())}")

    def _update_uniform(self, images: np.ndarray | list[np.ndarray]) -> None:
        """Track whether every image so far shares one (shape, dtype): None = no images yet."""
        if isinstance(images, np.ndarray):
            kinds = {(images.shape[1:], images.dtype)}
        else:
            kinds = {(im.shape, im.dtype) for im in images}
        if self._uniform is None:
            self._uniform = next(iter(kinds)) if len(kinds) == 1 else False
        elif self._uniform and kinds != {self._uniform}:
            self._uniform = False

    def _meta_now(self, count: int) -> bytes:
        meta = self._meta()
        meta["count"] = count
        meta["uniform"] = (
            {"shape": list(self._uniform[0]), "dtype": self._uniform[1].newbyteorder("<").str}
            if self._uniform
            else None
        )
        return json.dumps(meta).encode()

    def _write(self, images, labels, start, checksums=None) -> None:
        n = len(images)
        keys = memoryview(np.arange(start, start + n, dtype=">u8").tobytes())
        self._update_uniform(images)
        meta = self._meta_now(start + n)
        # Encode slice by slice inside the transaction: a multi-GB batch costs one
        # slice of extra memory, not a second copy of itself.
        per = max(1, _ENCODE_BYTES // max(1, images[0].nbytes))
        self._reserve_map(images)

        def work(txn: lmdb.Transaction) -> None:
            cursor = txn.cursor(db=self._db)
            added = 0
            for s in range(0, n, per):
                values = self._encode(images[s : s + per])
                items = zip([keys[o : o + 8] for o in range(8 * s, 8 * (s + len(values)), 8)], values)
                added += cursor.putmulti(items, append=True)[1]
            if added != n:
                raise CorruptStoreError(f"{self.path}: {n - added} image keys already existed at index {start}")
            if labels is not None:
                self._put_column(txn, _labels_key, labels.astype("<i8"), start)
            if checksums is not None:
                self._put_column(txn, _checksums_key, checksums.astype("<u8"), start)
            txn.put(META_KEY, meta)

        self._txn(work, sum(im.nbytes for im in images) if isinstance(images, list) else images.nbytes)

    @staticmethod
    def _put_column(txn: lmdb.Transaction, key, values: np.ndarray, start: int) -> None:
        """Store 8-byte ``values`` of images ``start..`` in chunks of LABEL_CHUNK under ``key(chunk)``.

        Only the chunk an append starts in is read back and rewritten.
        """
        pos, end = start, start + len(values)
        while pos < end:
            chunk = pos // LABEL_CHUNK
            chunk_start = chunk * LABEL_CHUNK
            take = min(end, chunk_start + LABEL_CHUNK) - pos
            old = txn.get(key(chunk)) if pos > chunk_start else b""
            old = bytes(old or b"")[: 8 * (pos - chunk_start)]
            new = values[pos - start : pos - start + take].tobytes()
            txn.put(key(chunk), old + new)
            pos += take

    def _flush(self, meta) -> None:
        self._txn(lambda txn: txn.put(META_KEY, self._meta_now(self._count)))
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise self._write_failed(exc) from None

    def _close_writer(self, commit: bool) -> None:
        if self._env is not None:
            lmdb_env.release(self._env)
            self._env = self._db = None

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        self._advice = None
        if self._env is not None:
            lmdb_env.release(self._env)
            self._env = self._db = None

    def _reader_handles(self) -> Any:
        handles = (self._env, self._db)
        self._env = self._db = None
        self._advice = None
        return handles

    def _advise(self, advice: int) -> None:
        """With ``readahead="auto"``, tell the kernel how the map is about to be read.

        A scan wants large readahead (``MADV_SEQUENTIAL``); random reads of a
        cold store want none (``MADV_RANDOM``), or every page fault drags in
        ~128 KiB nobody asked for and evicts what was cached. One ``madvise``
        per change of pattern, not per read.
        """
        if self.options["readahead"] != "auto" or not mapadvice.AVAILABLE:
            return
        if self._advice is None or self._advice[2] != advice:
            found = mapadvice.advise(self.path / "data.mdb", advice)  # LMDB does not say where its map is
            if found is not None:
                self._advice = (*found, advice)

    def _read_txn(self) -> lmdb.Transaction:
        try:
            return self._env.begin(buffers=True)
        except lmdb.MapResizedError:
            # A writer grew the map since we opened: adopt the new size.
            self._env.set_mapsize(0)
            self._advice = None  # the map moved; advise it again
            return self._env.begin(buffers=True)

    def _parse(self, value, index: int) -> tuple[np.dtype, tuple[int, ...], memoryview]:
        if value is None:
            raise CorruptStoreError(f"{self.path}: image {index} is missing")
        if len(value) < HEADER.size:
            raise CorruptStoreError(f"{self.path}: image {index} is shorter than its header")
        magic, version, cid, did, ndim, _, h, w, c = HEADER.unpack_from(value)
        if magic != MAGIC or version != HEADER_VERSION or ndim not in (2, 3):
            raise CorruptStoreError(f"{self.path}: image {index} has a damaged header")
        if _CODEC_BY_ID.get(cid) != self.compression:
            raise CorruptStoreError(f"{self.path}: image {index} claims codec id {cid}, store uses {self.compression}")
        shape = (h, w, c) if ndim == 3 else (h, w)
        if min(shape) < 1 or (ndim == 3 and c > 4):
            raise CorruptStoreError(f"{self.path}: image {index} has an impossible shape {shape}")
        return dtype_from_id(did), shape, memoryview(value)[HEADER.size :]

    def _decode(self, value, index: int) -> np.ndarray:
        dtype, shape, payload = self._parse(value, index)
        try:
            return self._codec().decode(payload, dtype, shape)
        except CorruptStoreError as exc:  # the codec cannot know which image it was given
            raise CorruptStoreError(f"{self.path}: image {index}: {exc}") from None

    @_lmdb_reads
    def _get(self, index: int) -> np.ndarray:
        if self._advice is None or self._advice[2] != mapadvice.RANDOM:
            self._advise(mapadvice.RANDOM)
        with self._read_txn() as txn:
            return self._decode(txn.get(_key(index), db=self._db), index)

    @_lmdb_reads
    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        # A run of consecutive indices (a shard's or a worker's block, a slice) is a scan: with
        # MADV_RANDOM a cold range read faulted 4 KiB at a time, ~20x slower than read_many().
        idx = np.asarray(indices)
        run = len(idx) > 1 and bool((np.diff(idx) == 1).all())
        self._advise(mapadvice.SEQUENTIAL if run else mapadvice.RANDOM)
        with self._read_txn() as txn:
            db = self._db

            def get(key: bytes):
                return txn.get(key, db=db)

            if self._uniform and self.compression == "none":
                # Keys fetched in sorted order (neighbouring B-tree pages, forward
                # readahead on a cold map), each payload copied straight to its row.
                shape, dtype = self._uniform
                hdr, size = _header(0, dtype, shape), math.prod(shape) * dtype.itemsize
                order = np.argsort(indices, kind="stable")
                out = dest = None
                for j, i in zip(order.tolist(), indices[order].tolist()):
                    value = get(_key(i))
                    if value is None or len(value) != HEADER.size + size or value[: HEADER.size] != hdr:
                        raise CorruptStoreError(f"{self.path}: image {i} is missing, has a damaged header or the wrong size")
                    if out is None:
                        # Allocated only once a stored value of the recorded size has
                        # been seen: the metadata alone cannot make us allocate.
                        out = np.empty((len(indices), *shape), dtype=dtype)
                        dest = memoryview(out.reshape(-1).view(np.uint8))
                    dest[j * size : (j + 1) * size] = value[HEADER.size :]
                return out if out is not None else np.empty((0, *shape), dtype=dtype)
            if self.compression == "none":
                images = [self._decode(get(_key(i)), i) for i in indices.tolist()]
            else:
                values = [(i, bytes(get(_key(i)) or b"")) for i in indices.tolist()]
        if self.compression != "none":
            images = parallel.map_items(lambda iv: self._decode(iv[1] or None, iv[0]), values, self.options["threads"])

        return stack_if_uniform(images)

    def _check_keys(self, txn: lmdb.Transaction, cursor: lmdb.Cursor) -> None:
        """Keys 0..n-1 are all there, checked in O(1) without a scan.

        In this snapshot the images database must hold exactly the snapshot's
        count of unique, sorted 8-byte keys from 0 to count-1, hence no gaps.
        The snapshot may be newer than our count (an appender committed since we
        opened); our n images are then its first n.
        """
        n = self._count
        try:
            current = int(json.loads(bytes(txn.get(META_KEY)))["count"])
        except (TypeError, ValueError, KeyError):
            raise CorruptStoreError(f"{self.path}: imgbench metadata is missing or damaged") from None
        entries = txn.stat(self._db)["entries"]
        first = cursor.key() if cursor.first() else None
        last = cursor.key() if cursor.last() else None
        if (
            current < n
            or entries != current
            or bytes(first or b"") != _key(0)
            or bytes(last or b"") != _key(current - 1)
        ):
            raise CorruptStoreError(
                f"{self.path}: the images database holds {entries} keys, expected 0..{current - 1} "
                "(missing or foreign keys)"
            )
        cursor.first()

    @_lmdb_reads
    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        n = self._count
        self._advise(mapadvice.SEQUENTIAL)
        with self._read_txn() as txn:
            cursor = txn.cursor(db=self._db)
            self._check_keys(txn, cursor)
            values = islice(cursor.iternext(keys=False, values=True), n)
            if self._uniform and self.compression == "none":
                # One cursor pass copying each payload straight into the output.
                shape, dtype = self._uniform
                hdr = _header(0, dtype, shape)
                size = math.prod(shape) * dtype.itemsize
                out = dest = None
                offset = 0
                for i, value in enumerate(values):
                    if len(value) != HEADER.size + size or value[: HEADER.size] != hdr:
                        raise CorruptStoreError(f"{self.path}: image {i} has a damaged header or the wrong size")
                    if out is None:
                        # Allocated only once image 0 is seen to have the recorded size:
                        # the metadata alone cannot make us allocate (n is bounded by
                        # the keys really stored, _check_keys).
                        out = np.empty((n, *shape), dtype=dtype)
                        dest = memoryview(out.reshape(-1).view(np.uint8))
                    dest[offset : offset + size] = value[HEADER.size :]
                    offset += size
                if offset != n * size:
                    raise CorruptStoreError(f"{self.path}: {offset // size} images stored, {n} recorded")
                return out if out is not None else np.empty((0, *shape), dtype=dtype)
            if self.compression == "none":
                images = [self._decode(v, i) for i, v in enumerate(values)]
            else:
                raw = [bytes(v) for v in values]
        if self.compression != "none" and self._uniform:
            return parallel.decode_stacked(
                lambda i: self._decode(raw[i], i), n, self.options["threads"], f"{self.path}: "
            )
        if self.compression != "none":
            parts = parallel.map_chunks(
                lambda s, e: [self._decode(raw[i], i) for i in range(s, e)], n, self.options["threads"]
            )
            images = [im for part in parts for im in part]

        return stack_if_uniform(images)

    @_lmdb_reads
    def _get_labels(self) -> np.ndarray | None:
        n = self._count
        with self._read_txn() as txn:
            if txn.stat(self._db)["entries"] < n:  # O(1) bound before a loop sized by the metadata
                raise CorruptStoreError(f"{self.path}: {n} images recorded, fewer stored")
            parts = [bytes(txn.get(_labels_key(c)) or b"") for c in range((n + LABEL_CHUNK - 1) // LABEL_CHUNK)]
        raw = b"".join(parts)
        if len(raw) < 8 * n:
            raise CorruptStoreError(f"{self.path}: labels are missing for some images")
        return np.frombuffer(raw[: 8 * n], dtype="<i8").astype(np.int64)

    @_lmdb_reads
    def _get_checksums(self) -> np.ndarray | None:
        n = self._count
        with self._read_txn() as txn:
            # The count comes from metadata; bound it by the keys really stored
            # (O(1)) before looping or allocating by it.
            entries = txn.stat(self._db)["entries"]
            if entries < n:
                raise CorruptStoreError(f"{self.path}: {n} images recorded, {entries} stored")
            out = np.empty(n, "<u8")
            dest = memoryview(out.view(np.uint8))
            for c in range((n + LABEL_CHUNK - 1) // LABEL_CHUNK):
                lo, hi = 8 * c * LABEL_CHUNK, 8 * min(n, (c + 1) * LABEL_CHUNK)
                value = txn.get(_checksums_key(c))
                if value is None or len(value) < hi - lo:
                    raise CorruptStoreError(
                        f"{self.path}: checksums of images {lo // 8}..{hi // 8 - 1} are "
                        f"{'missing' if value is None else 'truncated'} (key {_checksums_key(c)!r})"
                    )
                # Longer is fine: an appender may have committed more since we opened.
                dest[lo:hi] = memoryview(value)[: hi - lo]
        return out.astype(np.uint64, copy=False)
