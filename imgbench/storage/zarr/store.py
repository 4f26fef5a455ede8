"""Zarr backend: images in zarr v3 arrays whose chunks live in shard objects, a group any zarr reader opens.

Chunked and cloud-ready: many images per shard object, a CRC-32C per inner chunk,
crash-safe appends in place while others read, and reads from ``s3://`` URLs.
Layout: docs/formats/zarr.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr
from zarr.abc.store import RangeByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.buffer.cpu import NDBuffer
from zarr.core.sync import sync as _zsync

from imgbench.core import atomic, checksum, limits, ownfiles
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_CODES, DTYPE_IDS, ITEMSIZE_BY_ID, dtype_from_id
from imgbench.core.levels import check_level
from imgbench.core.store import Store, check_meta, stack_if_uniform
from imgbench.core.transport import RemoteStore
from imgbench.storage.zarr import checks
from imgbench.storage.zarr.bounded_zstd import BOUNDED_CODECS
from imgbench.storage.zarr.layout import (
    ARRAYS,
    CHUNK_BYTES,
    DTYPE_IDS_JSON,
    FIXED,
    INDEX_ARRAYS,
    INDEX_LEVEL,
    LEVELS,
    MAX_ARRAY_JSON_BYTES,
    MAX_CHUNKS_PER_SHARD,
    MAX_INDEX_ENTRIES,
    MAX_RECORD_BYTES,
    RAGGED,
    RECORD_KEY,
    SHARD_BYTES,
    chunk_codecs,
    grid,
)
from imgbench.storage.zarr.localstore import FileStore, Pins, read_regular
from imgbench.storage.zarr.urlstore import RemoteZarrReading

T = TypeVar("T")
#: bytes of sorted rows a reader fetches at a time for an out-of-order read_many (then scattered into the output)
SCATTER_BYTES = 4 << 20


def _positive_int(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise UnsupportedError(f"{name} must be a positive integer or None, got {value!r}")


def _run(coro: Any) -> Any:
    """``zarr.core.sync.sync(coro)``; interrupted before zarr started it, the coroutine is closed
    (not left to warn "coroutine ... was never awaited" under the one-line "interrupted")."""
    import inspect

    try:
        return _zsync(coro)
    except BaseException:
        if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()
        raise


def _drain_zarr_loop() -> None:
    """Wait until zarr's event-loop thread has finished the work it was given.

    An interrupt (Ctrl-C) reaches the main thread while it waits in ``zarr.core.sync.sync``;
    the coroutine it was waiting for keeps writing on zarr's loop thread. An aborting writer
    waits for it here, or it would write into the temporary store after it was removed.
    """
    import asyncio

    async def drain() -> None:
        me = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if others:
            await asyncio.wait(others)

    while True:
        try:
            _zsync(drain())
            return
        except Exception:
            return
        except BaseException:  # another Ctrl-C: keep waiting, the first one is on its way up
            continue

class ZarrStore(Store):
    name = "zarr"
    compressions = ("none", "zstd", "blosc")
    stores_checksums = True
    option_defaults = {
        "shard_images": None,  # images per shard object of the images array (None = ~16 MiB of raw pixels)
        "chunk_images": None,  # images per inner chunk, the unit zarr decodes (None = ~128 KiB)
        "threads": None,  # chunks zarr works on at once (zarr's async.concurrency; None = zarr's default)
        "sync": True,  # flush the filesystem before a commit record is written
    }

    def _check_options(self) -> None:
        for name in ("shard_images", "chunk_images", "threads"):
            _positive_int(self.options[name], name)
        shard, chunk = self.options["shard_images"], self.options["chunk_images"]
        if shard is not None and chunk is not None and shard % chunk:
            raise UnsupportedError(
                f"shard_images ({shard}) must be a multiple of chunk_images ({chunk}): a shard holds whole chunks"
            )
        if shard is not None and shard // (chunk or 1) > MAX_INDEX_ENTRIES:
            raise UnsupportedError(
                f"a shard holds at most {MAX_INDEX_ENTRIES} inner chunks: lower shard_images or raise chunk_images"
            )

    def _start_new(self) -> None:
        # zarr's IO thread and event loop start before the temporary exists: a Ctrl-C that lands
        # while asyncio builds the loop leaves a half-built loop that complains when collected.
        zarr.core.sync._get_loop()
        super()._start_new()

    def _check_level(self, compression: str, level: int | None) -> int | None:
        return check_level(compression, level, LEVELS[compression])

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Every codec here is lossless on every supported dtype."""

    def _init_handles(self) -> None:
        self._store: FileStore | None = None
        self._pins: Pins | None = None
        self._arrays: dict[str, Any] = {}
        self._target: Path | None = None
        self._uniform: tuple[tuple[int, ...], np.dtype] | None = None
        self._ucount = 0  # images in the uniform array
        self._rcount = 0  # images in the ragged arrays
        self._data_end = 0  # bytes of ``data`` in use
        self._ragged: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # reader's offsets, shapes, dtype ids
        self._sizes: dict[tuple[str, int], int] = {}

    @classmethod
    def detect(cls, path: Path) -> bool:
        # Never open anything but a regular file here: every imgbench.open() of a
        # directory runs this, and a FIFO named zarr.json would block it forever.
        try:
            if not path.is_dir() or not stat.S_ISREG(os.lstat(path / RECORD_KEY).st_mode):
                return False
            head = read_regular(path / RECORD_KEY, 1 << 16)
        except (OSError, CorruptStoreError):
            return False
        return head is not None and b'"imgbench"' in head

    @classmethod
    def detect_remote(cls, probe) -> bool:
        if probe.names is None or RECORD_KEY not in probe.names:
            return False
        head = probe.read(RECORD_KEY, 1 << 16)
        return head is not None and b'"imgbench"' in head

    @classmethod
    def remote_reader(cls) -> type[Store]:
        return RemoteZarrStore

    # ------------------------------------------------------------ helpers
    def _context(self) -> contextlib.AbstractContextManager:
        threads = self.options["threads"]
        return contextlib.nullcontext() if threads is None else zarr.config.set({"async.concurrency": threads})

    def _reading(self, what: str, fn: Callable[[], T]) -> T:
        """Run a zarr read; anything but our own errors means a damaged store."""
        try:
            with self._context():
                return fn()
        except CorruptStoreError as exc:
            raise self._explain(exc) from None
        except (ImgbenchError, IndexError):
            raise
        except Exception as exc:
            raise self._explain(CorruptStoreError(
                f"{self.path}: reading {what} failed, the store is damaged ({type(exc).__name__}: {exc})"
            )) from None

    def _explain(self, exc: CorruptStoreError) -> CorruptStoreError:
        """``exc``, saying so when a writer replaced (or removed) the store this reader holds open.

        Only on the error path: a reader racing a ``w`` publish is told the store was replaced, not
        that it is damaged."""
        pins = self._pins
        dirfd = pins.dirfd if pins is not None else None
        if dirfd is None or "replaced" in str(exc):
            return exc
        try:
            held = os.fstat(dirfd)
            try:
                now = os.stat(self.path)
                replaced = held.st_nlink == 0 or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)
            except FileNotFoundError:
                replaced = True
        except OSError:
            return exc
        if not replaced:
            return exc
        return CorruptStoreError(f"{exc} (the store was replaced or removed while it was open)")

    def _writing_zarr(self, what: str, fn: Callable[[], T]) -> T:
        try:
            with self._context():
                return fn()
        except ImgbenchError:
            raise
        except Exception as exc:
            raise ImgbenchError(f"writing {what} to {self.path} failed: {type(exc).__name__}: {exc}") from exc

    def _ratio(self, name: str) -> int:
        return limits.ZARR_MAX_RATIO["zstd" if name in INDEX_ARRAYS else self.compression]

    # ------------------------------------------------------------ opening
    def _open_store(self, target: Path, reader: bool) -> FileStore:
        if not reader:
            return FileStore(target)
        try:
            dirfd = ownfiles.open_dir(target)
        except (NotADirectoryError, FileNotFoundError) as exc:
            raise CorruptStoreError(f"{target} is not a zarr store directory ({exc.strerror})") from None
        self._pins = Pins(dirfd)
        return FileStore(target, read_only=True, pins=self._pins)

    def _read_record(self, store: FileStore, target: Path) -> dict[str, Any]:
        def load() -> bytes | None:
            if isinstance(store, FileStore) and store._pins is None:
                return read_regular(target / RECORD_KEY, MAX_RECORD_BYTES + 1)
            return store.read(RECORD_KEY, RangeByteRequest(0, MAX_RECORD_BYTES + 1))

        return checks.parse_record(load(), target)

    def _load(self, store: FileStore, target: Path, mode: str) -> dict[str, Any]:
        """Read and check the commit record and open the arrays it counts."""
        meta = check_meta(self._read_record(store, target), self.name, target)
        count = meta["count"]
        uniform, ucount = checks.check_record(meta, target)
        self._store, self._target = store, target
        self._uniform, self._ucount, self._rcount = uniform, ucount, count - ucount
        labelled = meta.get("labels") is True and count > 0
        checksummed = meta.get("checksum") == checksum.ALGORITHM and count > 0
        wanted = ["images"] if ucount else []
        wanted += list(RAGGED) if self._rcount else []
        wanted += ["labels"] if labelled else []
        wanted += ["checksums"] if checksummed else []
        self._arrays = {name: self._open_array(name, mode) for name in wanted}
        lengths = {"images": ucount, "labels": count, "checksums": count, "offsets": self._rcount + 1,
                   "shapes": self._rcount, "dtypes": self._rcount, "data": 0}
        for name, arr in self._arrays.items():
            if arr.shape[0] < lengths[name]:
                raise CorruptStoreError(
                    f"{target}: array {name!r} holds {arr.shape[0]} entries, the commit record counts {lengths[name]}"
                )
        return meta

    def _open_array(self, name: str, mode: str) -> Any:
        """Open one array, refusing metadata imgbench would not write."""
        store = self._store
        size = store.size(f"{name}/zarr.json")
        if size is None:
            raise CorruptStoreError(f"{self._target}: array {name!r} is missing")
        if size > MAX_ARRAY_JSON_BYTES:
            raise CorruptStoreError(f"{self._target}: metadata of array {name!r} is implausibly large")
        def open_array() -> Any:
            # Readers decode zstd chunks with the bounded codec (the class is chosen when the metadata is parsed).
            with zarr.config.set(BOUNDED_CODECS) if mode == "r" else contextlib.nullcontext():
                return zarr.open_array(store, path=name, mode="r" if mode == "r" else "r+", zarr_format=3)

        arr = self._reading(f"the metadata of array {name!r}", open_array)
        checks.check_array(arr, name, self._uniform, self._target)
        if mode != "r":
            arr = arr.with_config({"write_empty_chunks": True})
        return arr

    def _open_reader(self) -> dict[str, Any]:
        store = self._open_store(self.path, reader=True)
        try:
            meta = self._load(store, self.path, "r")
            self._ragged = None
            self._sizes = {}
            # The last shard of each array may be rewritten by an appender: read one version of it.
            for name, last in () if self._pins is None else (("images", self._ucount - 1), ("labels", meta["count"] - 1),
                               ("checksums", meta["count"] - 1),
                               ("offsets", self._rcount), ("shapes", self._rcount - 1),
                               ("dtypes", self._rcount - 1)):
                if name in self._arrays and last >= 0:
                    self._pins.keys.add(self._shard_key(name, last // self._shard_rows(name)))
            return meta
        except CorruptStoreError as exc:
            exc = self._explain(exc)
            self._close_reader()
            raise exc from None
        except BaseException:
            self._close_reader()
            raise

    def _open_appender(self, target: Path) -> dict[str, Any]:
        store = self._open_store(target, reader=False)
        meta = self._load(store, target, "a")
        if self._rcount:
            end = self._reading("offsets", lambda: self._arrays["offsets"][self._rcount])
            if end < 0 or end > self._arrays["data"].shape[0]:
                raise CorruptStoreError(f"{target}: the ragged offsets are inconsistent")
            self._data_end = int(end)
        self._remove_partials()
        return meta

    def _remove_partials(self) -> None:
        """Delete temporaries of writes a killed appender left (we hold the writer lock)."""
        store = self._store

        async def clean() -> None:
            for prefix in ("",) + ARRAYS:
                async for name in store.list_dir(prefix):
                    if name.endswith(".partial"):
                        await store.delete(f"{prefix}/{name}" if prefix else name)

        with contextlib.suppress(Exception):
            _zsync(clean())

    def _create(self, target: Path) -> None:
        target.mkdir()
        self._store, self._target = self._open_store(target, reader=False), target
        self._uniform, self._ucount, self._rcount, self._data_end = None, 0, 0, 0
        self._arrays = {}
        self._write_record(self._meta())

    # ------------------------------------------------------------ writing
    def _new_array(self, name: str, dtype: np.dtype, rest: tuple[int, ...], chunk: int, shard: int) -> Any:
        def create() -> Any:
            return zarr.create_array(
                self._store, name=name, shape=(0, *rest), dtype=dtype,
                chunks=(chunk, *rest), shards=(shard, *rest),
                compressors=chunk_codecs(
                    *(("zstd", INDEX_LEVEL) if name in INDEX_ARRAYS else (self.compression, self.level))
                ),
                filters=None, fill_value=0,
                chunk_key_encoding={"name": "default", "separator": "."},
                dimension_names=("image", "y", "x", "channel")[: 1 + len(rest)] if name == "images" else None,
                overwrite=True, config={"write_empty_chunks": True}, zarr_format=3,
            )

        arr = self._writing_zarr(f"array {name!r}", create)
        self._arrays[name] = arr
        return arr

    def _ensure(self, name: str) -> Any:
        arr = self._arrays.get(name)
        if arr is not None:
            return arr
        if name == "images":
            shape, dtype = self._uniform
            chunk_opt, shard_opt = self.options["chunk_images"], self.options["shard_images"]
            chunk, shard = grid(
                math.prod(shape) * dtype.itemsize,
                None if chunk_opt is None else int(chunk_opt),
                None if shard_opt is None else int(shard_opt),
            )
            return self._new_array(name, dtype, shape, chunk, shard)
        dtype, rest, chunk = FIXED[name]
        row_bytes = dtype.itemsize * math.prod(rest)
        per_shard = max(1, min(MAX_CHUNKS_PER_SHARD, SHARD_BYTES // (chunk * row_bytes)))
        arr = self._new_array(name, dtype, rest, chunk, chunk * per_shard)
        if name == "offsets":
            self._put(arr, 0, np.zeros(1, np.int64))
        return arr

    def _put(self, arr: Any, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` at ``start``, growing the array (never shrinking it) first."""
        stop = start + len(rows)

        def write() -> None:
            if arr.shape[0] < stop:
                arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = rows

        self._writing_zarr(f"array {arr.path!r}", write)

    def _write(self, images, labels, start, checksums=None) -> None:
        if start != self._ucount + self._rcount:
            raise ImgbenchError(f"internal error: writing at {start}, the store holds {self._ucount + self._rcount}")
        if isinstance(images, np.ndarray):
            kind = (images.shape[1:], images.dtype)
            n_uniform = len(images) if not self._rcount and self._uniform in (None, kind) else 0
            if n_uniform:
                self._write_uniform(kind, images)
            else:
                self._write_ragged(list(images))
        else:
            n_uniform = 0
            if not self._rcount:
                kind = self._uniform or (images[0].shape, images[0].dtype)
                while n_uniform < len(images) and (images[n_uniform].shape, images[n_uniform].dtype) == kind:
                    n_uniform += 1
                if n_uniform:
                    self._write_uniform(kind, np.stack(images[:n_uniform]))
            if n_uniform < len(images):
                self._write_ragged(images[n_uniform:])
        if labels is not None:
            self._put(self._ensure("labels"), start, np.asarray(labels, np.int64))
        if checksums is not None:
            self._put(self._ensure("checksums"), start, np.asarray(checksums, "<u8"))

    def _write_uniform(self, kind: tuple[tuple[int, ...], np.dtype], batch: np.ndarray) -> None:
        self._uniform = (tuple(kind[0]), np.dtype(kind[1]))
        self._put(self._ensure("images"), self._ucount, batch)
        self._ucount += len(batch)

    def _write_ragged(self, items: list[np.ndarray]) -> None:
        sizes = np.array([im.nbytes for im in items], np.int64)
        blob = np.concatenate(
            [np.ascontiguousarray(im, dtype=im.dtype.newbyteorder("<")).reshape(-1).view(np.uint8) for im in items]
        )
        r = self._rcount
        self._put(self._ensure("data"), self._data_end, blob)
        self._put(self._ensure("offsets"), r + 1, self._data_end + np.cumsum(sizes))
        shapes = np.array([im.shape + (0,) * (3 - im.ndim) for im in items], np.int64)
        self._put(self._ensure("shapes"), r, shapes)
        self._put(self._ensure("dtypes"), r, np.array([DTYPE_IDS[im.dtype] for im in items], np.uint8))
        self._rcount += len(items)
        self._data_end += int(sizes.sum())

    def _write_record(self, meta: dict[str, Any]) -> None:
        record = dict(meta)
        record["uniform_count"] = self._ucount
        record["image"] = (
            None if self._uniform is None
            else {"shape": list(self._uniform[0]), "dtype": DTYPE_CODES[self._uniform[1]]}
        )
        record["layout"] = "ragged" if not self._ucount and self._rcount else "mixed" if self._rcount else "uniform"
        record["dtype_ids"] = DTYPE_IDS_JSON
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {"imgbench": record}}
        data = json.dumps(doc, indent=1).encode()
        store = self._store
        self._writing_zarr("the commit record", lambda: _run(
            store.set(RECORD_KEY, default_buffer_prototype().buffer.from_bytes(data))))

    def _flush(self, meta) -> None:
        sync = self.options["sync"]
        try:
            if sync:
                atomic.sync_filesystem(self._target)  # every chunk is durable before the record counts it
            self._write_record(meta)
            if sync:
                atomic.fsync_path(self._target / RECORD_KEY)
                atomic.fsync_path(self._target, directory=True)
        except OSError as exc:
            raise ImgbenchError(f"writing the commit record of {self.path} failed: {exc}") from exc

    def _close_writer(self, commit: bool) -> None:
        if not commit and self._store is not None:
            _drain_zarr_loop()
        self._arrays = {}
        self._store = None

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        self._arrays = {}
        self._store = None
        self._ragged = None
        if self._pins is not None:
            self._pins.close()
            self._pins = None

    def _reader_handles(self) -> Any:
        handles = (self._store, self._arrays, self._pins)
        self._store, self._arrays, self._pins, self._ragged = None, {}, None, None
        return handles  # inherited descriptors: left open, the parent still uses them

    def _shard_rows(self, name: str) -> int:
        return int(self._arrays[name].shards[0])

    def _shard_key(self, name: str, shard: int) -> str:
        arr = self._arrays[name]
        return f"{name}/" + arr.metadata.encode_chunk_key((shard,) + (0,) * (arr.ndim - 1))

    def _shard_size(self, name: str, shard: int) -> int:
        size = self._sizes.get((name, shard))
        if size is None:
            size = self._store.size(self._shard_key(name, shard))
            if size is None:
                raise CorruptStoreError(
                    f"{self.path}: shard {shard} of array {name!r} is missing (the store is damaged, or was "
                    "replaced while it was open)"
                )
            self._sizes[(name, shard)] = size
        return size

    def _check(self, name: str, chunks: int, shards: Iterator[int] | np.ndarray) -> None:
        """Refuse to decode ``chunks`` inner chunks that the stored shards cannot plausibly hold.

        Checked before zarr allocates: a lying shape or count in the metadata
        meets shards that are missing or far too small, not a huge allocation.
        """
        arr = self._arrays[name]
        row_bytes = math.prod(arr.shape[1:]) * arr.dtype.itemsize
        declared = chunks * int(arr.chunks[0]) * row_bytes
        budget = limits.ZARR_SLACK_BYTES
        for shard in shards:
            budget += self._shard_size(name, int(shard)) * self._ratio(name)
            if budget >= declared:
                return
        raise CorruptStoreError(
            f"{self.path}: array {name!r} declares {declared} bytes where its shards hold far fewer: "
            "the metadata is damaged or lies"
        )

    def _check_range(self, name: str, start: int, stop: int) -> None:
        arr = self._arrays[name]
        chunk, shard = int(arr.chunks[0]), self._shard_rows(name)
        self._check(name, -(-stop // chunk) - start // chunk, iter(range(start // shard, (stop - 1) // shard + 1)))

    def _check_rows(self, name: str, rows: np.ndarray) -> None:
        arr = self._arrays[name]
        chunk, shard = int(arr.chunks[0]), self._shard_rows(name)
        self._check(name, len(np.unique(rows // chunk)), np.unique(rows // shard))

    def _rows(
        self, name: str, start: int, stop: int, out: np.ndarray | None = None, what: str | None = None
    ) -> np.ndarray:
        """Rows ``start:stop`` of array ``name``; ``what`` names them in errors (default: the array)."""
        self._check_range(name, start, stop)
        arr = self._arrays[name]
        what = what or name
        if out is None:
            return self._reading(what, lambda: arr[start:stop])
        self._reading(what, lambda: arr.get_basic_selection(slice(start, stop), out=NDBuffer.from_numpy_array(out)))
        return out

    def _uniform_many(self, idx: np.ndarray) -> np.ndarray:
        """Images at uniform positions ``idx``: sorted, fetched in one call, put back in order.

        Out of order (a permutation, repeats), the sorted rows are fetched in batches of about
        :data:`SCATTER_BYTES` and each batch is written straight into the output, so the read
        holds the output plus one batch instead of the output twice.
        """
        uniq, inverse = np.unique(idx, return_inverse=True)
        inverse = inverse.reshape(-1)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        arr = self._arrays["images"]
        if len(uniq) == len(idx) and (idx[1:] > idx[:-1]).all():
            if hi - lo == len(uniq):
                return self._rows("images", lo, hi)
            self._check_rows("images", uniq)
            return self._reading("images", lambda: arr.get_orthogonal_selection((uniq,)))
        self._check_rows("images", uniq)  # every declared size, before the output is allocated
        shape, dtype = self._uniform
        out = np.empty((len(idx), *shape), dtype)
        chunk = int(arr.chunks[0])
        row_bytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        step = max(chunk, SCATTER_BYTES // row_bytes // chunk * chunk)  # whole chunks: none is decoded twice
        order = np.argsort(inverse, kind="stable")  # output positions, grouped by the sorted row they take
        taken = inverse[order]
        a = 0
        while a < len(uniq):
            b = int(np.searchsorted(uniq, int(uniq[a]) // chunk * chunk + step))
            # runs of rows with no whole chunk between them, each read as one basic slice (zarr's
            # orthogonal selection holds many times its output while it decodes)
            for run in np.split(np.arange(a, b), np.flatnonzero(np.diff(uniq[a:b]) > chunk) + 1):
                lo, hi = int(uniq[run[0]]), int(uniq[run[-1]]) + 1
                block = self._rows("images", lo, hi)
                where = order[np.searchsorted(taken, run[0]):np.searchsorted(taken, run[-1] + 1)]
                out[where] = block[uniq[inverse[where]] - lo]
                del block
            a = b
        return out

    def _ragged_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offsets, shapes and dtype ids of the ragged images, loaded and checked once per reader."""
        if self._ragged is None:
            r = self._rcount
            offsets = self._rows("offsets", 0, r + 1).astype(np.int64)
            shapes = self._rows("shapes", 0, r).astype(np.int64)
            ids = self._rows("dtypes", 0, r)
            if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] > self._arrays["data"].shape[0]:
                raise CorruptStoreError(f"{self.path}: ragged index (offsets) is inconsistent")
            itemsize = ITEMSIZE_BY_ID[ids]
            dims = shapes.copy()
            dims[dims[:, 2] == 0, 2] = 1
            if (
                (itemsize == 0).any()
                or (shapes[:, :2] < 1).any()
                or (shapes[:, 2] < 0).any()
                or (shapes[:, 2] > 4).any()
                or (shapes > 1 << 31).any()
                or (dims.prod(axis=1) * itemsize != np.diff(offsets)).any()
            ):
                raise CorruptStoreError(f"{self.path}: ragged index (shapes/dtypes) disagrees with the stored bytes")
            if offsets[-1] > 0 and self._pins is not None:
                shard = int((offsets[-1] - 1) // self._shard_rows("data"))
                self._pins.keys.add(self._shard_key("data", shard))
            self._ragged = (offsets, shapes, ids)
        return self._ragged

    def _ragged_images(self, positions: np.ndarray, what: str | None = None) -> list[np.ndarray]:
        """Ragged images ``positions`` in that order; nearby byte ranges are read in one zarr call."""
        offsets, shapes, ids = self._ragged_index()
        uniq, inverse = np.unique(positions, return_inverse=True)
        starts, stops = offsets[uniq], offsets[uniq + 1]
        images: list[np.ndarray] = []
        k = 0
        while k < len(uniq):
            end = k + 1
            while end < len(uniq) and starts[end] - stops[end - 1] <= CHUNK_BYTES:
                end += 1
            base = int(starts[k])
            blob = self._rows("data", base, int(stops[end - 1]), what=what)
            for j in range(k, end):
                dtype = dtype_from_id(int(ids[uniq[j]]))
                dims = tuple(int(d) for d in shapes[uniq[j]] if d)
                raw = blob[int(starts[j]) - base : int(stops[j]) - base]
                images.append(raw.view(dtype.newbyteorder("<")).astype(dtype).reshape(dims))
            k = end
        return [images[i] for i in inverse.reshape(-1)]

    def _get(self, index: int) -> np.ndarray:
        what = f"image {index}"
        if index < self._ucount:
            return self._rows("images", index, index + 1, what=what)[0]
        return self._ragged_images(np.array([index - self._ucount]), what=what)[0]

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        in_uniform = indices < self._ucount
        if in_uniform.all():
            return self._uniform_many(indices)
        out: list[np.ndarray | None] = [None] * len(indices)
        if in_uniform.any():
            where = np.flatnonzero(in_uniform)
            for k, image in zip(where.tolist(), self._uniform_many(indices[where])):
                out[k] = image
        where = np.flatnonzero(~in_uniform)
        for k, image in zip(where.tolist(), self._ragged_images(indices[where] - self._ucount)):
            out[k] = image
        return stack_if_uniform(out)

    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        uniform = None
        if self._ucount:
            shape, dtype = self._uniform
            self._check_range("images", 0, self._ucount)  # before the output is allocated
            uniform = self._rows("images", 0, self._ucount, out=np.empty((self._ucount, *shape), dtype))
        if not self._rcount:
            return uniform
        rest = self._ragged_images(np.arange(self._rcount))
        return stack_if_uniform((list(uniform) if uniform is not None else []) + rest)

    def _get_labels(self) -> np.ndarray | None:
        return self._rows("labels", 0, self._count).astype(np.int64)

    def _get_checksums(self) -> np.ndarray | None:
        if not self._count:
            return np.zeros(0, np.uint64)  # an empty store has no array yet
        return self._rows("checksums", 0, self._count).astype(np.uint64)


class RemoteZarrStore(RemoteZarrReading, RemoteStore, ZarrStore):
    """A zarr store read from a URL (``s3://bucket/x.zarr``) through zarr's ``FsspecStore``.

    Everything but the storage is the local reader's: the commit record and
    every array's metadata are checked the same way, zstd chunks are decoded by
    the bounded codec, declared sizes are checked against the stored shards
    (one HEAD per shard, cached) before anything is allocated. Not pinned like
    a local reader (:mod:`imgbench.storage.zarr.urlstore` says what that means).
    """
