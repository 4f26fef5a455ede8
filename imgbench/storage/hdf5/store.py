"""HDF5 backend: images as one n-dimensional dataset in one file, compressed by HDF5 filters.

The format of the HDF5 world (h5py, MATLAB, HDFView): one file, read straight
into a preallocated array. HDF5 is not crash-safe when modified in place, so
appending copies the file and swaps it in. Layout: docs/formats/hdf5.md.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import resource
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from imgbench.core import atomic, ownfiles
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_CODES, dtype_from_code
from imgbench.core.levels import check_level
from imgbench.core.store import Store, stack_if_uniform
from imgbench.core.transport import RemoteStore
from imgbench.storage.hdf5 import unraisable
from imgbench.storage.hdf5.chunk_table import ChunkTable
from imgbench.storage.hdf5.guards import ChunkGuard, check_dataset, check_layout
from imgbench.storage.hdf5.layout import (
    COMPRESSED_CACHE_BYTES,
    COMPRESSED_CACHE_SLOTS,
    COMPRESSORS,
    H5_ERRORS,
    LEVELS,
    PACKED_CHUNK_BYTES,
    PACKED_DATA_CHUNK_BYTES,
    RAW_CHUNK_BYTES,
    ROW_CHUNK,
    SIGNATURE,
)
from imgbench.storage.hdf5.remote import BLOCK_SIZE, RemoteHDF5Reading


class HDF5Store(Store):
    name = "hdf5"
    compressions = ("none", "gzip", "lzf", "zstd")
    option_defaults = {
        "chunks": None,  # images per chunk in the uniform layout (None = chosen from image size)
        "rdcc_nbytes": None,  # HDF5 chunk cache per dataset, bytes (None = HDF5 default, 1 MiB)
        "locking": None,  # HDF5 file locking (False for NFS without lock support)
        "sync": True,  # fsync the file before publishing it
    }
    in_place_append = False
    stores_checksums = True

    def _check_options(self) -> None:
        chunks = self.options["chunks"]
        if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1):
            raise UnsupportedError(f"chunks must be a positive number of images per chunk, got {chunks!r}")

    def _check_level(self, compression: str, level: int | None) -> int | None:
        return check_level(compression, level, LEVELS[compression])

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Every HDF5 filter here is lossless on every supported dtype."""

    def _init_handles(self) -> None:
        self._file: h5py.File | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._layout: str | None = None
        self._target: Path | None = None
        self._chunk_table: ChunkTable | None | bool = None  # False: not usable for this file
        self._slab: tuple[Any, Any] | None = None  # (memory space, file space) reused by one-image reads
        self._kind: tuple[tuple[int, ...], np.dtype] | None = None
        self._guards: dict[str, ChunkGuard | None] = {}
        self._held: dict[str, h5py.Dataset] = {}  # writers: datasets kept open between writes (see _hold)

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_file():
            return False
        try:  # the store's own file: a symlink to one is followed, as h5py would, but not a FIFO
            return ownfiles.read_own(path.resolve(), 8) == SIGNATURE
        except (OSError, CorruptStoreError):
            return False

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is None and probe.read(None, 8) == SIGNATURE

    @classmethod
    def remote_reader(cls) -> type[Store]:
        return RemoteHDF5Store

    # ------------------------------------------------------------ opening
    def _h5open(self, target: Path, mode: str, source: Any = None) -> h5py.File:
        """Open ``target`` (or the file object ``source``, named ``target`` in errors) with h5py."""
        kw: dict[str, Any] = {}
        if self.options["rdcc_nbytes"] is not None:
            kw["rdcc_nbytes"] = self.options["rdcc_nbytes"]
        if self.options["locking"] is not None:
            kw["locking"] = self.options["locking"]
        try:
            return h5py.File(target if source is None else source, mode, **kw)
        except OSError as exc:
            text = " ".join(str(exc).split())
            if mode != "r" and (exc.errno == errno.ENOSPC or "No space left on device" in text):
                raise ImgbenchError(f"cannot write to {target}: no space left on device; free some space and "
                                    "write again") from None
            if "unable to lock" in text.lower() or "locking" in text.lower():
                why = (f"cannot open {target}: HDF5 file locking refused it ({text}); another program has it "
                       "open for writing, or the filesystem has no locks")
                raise ImgbenchError(f"{why} (NFS: pass locking=False or set HDF5_USE_FILE_LOCKING=FALSE)",
                                    cli=f"{why} (NFS: set HDF5_USE_FILE_LOCKING=FALSE)") from None
            raise CorruptStoreError(f"{target} is not a readable HDF5 file: {text}") from None

    def _load(self, f: h5py.File, target: Path) -> dict[str, Any]:
        try:
            raw = f.attrs.get("imgbench")
            meta = json.loads(raw) if raw is not None else None
        except (*H5_ERRORS, json.JSONDecodeError):
            raise CorruptStoreError(f"{target}: imgbench metadata attribute is unreadable") from None
        if not isinstance(meta, dict):
            raise CorruptStoreError(f"{target} is an HDF5 file without imgbench metadata (root attribute 'imgbench')")
        try:
            ds = check_dataset(f, "attrs", target, required=False)
            if ds is not None and (ds.shape != () or h5py.check_string_dtype(ds.dtype) is None):
                raise CorruptStoreError(f"{target}: the 'attrs' dataset is not one string")
            attrs_raw = ds[()] if ds is not None else b"{}"
            meta["attrs"] = json.loads(attrs_raw.decode() if isinstance(attrs_raw, bytes) else attrs_raw)
        except (*H5_ERRORS, json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            raise CorruptStoreError(f"{target}: the 'attrs' dataset is unreadable") from None
        check_layout(f, meta, target)
        self._layout = meta.get("layout")
        return meta

    def _open_reader(self) -> dict[str, Any]:
        f = self._h5open(self.path, "r")
        try:
            meta = self._load(f, self.path)
        except BaseException:
            f.close()
            raise
        self._file = f
        self._datasets = {}
        return meta

    def _ds(self, name: str) -> h5py.Dataset:
        """Dataset handle, cached; uncompressed data is read around the chunk cache."""
        ds = self._datasets.get(name)
        if ds is None:
            if self.options["rdcc_nbytes"] is None and name in ("images", "data"):
                # Uncompressed: no cache, every read goes straight to the file.
                # Compressed: room for a few chunks (a batch of sorted indices
                # touches each chunk once) in a hash table sized so that slots
                # do not collide (HDF5 advises ~100x the chunks that fit).
                dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
                if self.compression == "none":
                    dapl.set_chunk_cache(0, 0, 1.0)
                else:
                    dapl.set_chunk_cache(COMPRESSED_CACHE_SLOTS, COMPRESSED_CACHE_BYTES, 1.0)
                ds = h5py.Dataset(h5py.h5d.open(self._file.id, name.encode(), dapl))
            else:
                ds = self._file[name]
            self._datasets[name] = ds
        return ds

    def _guard(self, name: str) -> ChunkGuard | None:
        """The chunk checker of compressed dataset ``name`` (None when it is not compressed)."""
        if name not in self._guards:
            ds = self._ds(name)
            dcpl = ds.id.get_create_plist()
            codes = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
            comp = [i for i, code in enumerate(codes) if code in COMPRESSORS]
            self._guards[name] = (
                ChunkGuard(ds, codes[comp[0]], comp[0], h5py.h5z.FILTER_FLETCHER32 in codes, *self._chunk_source(ds))
                if comp else None
            )
        return self._guards[name]

    def _chunk_source(self, ds: h5py.Dataset) -> tuple[Callable[[int, int], bytes], str]:
        """How the chunk guard reads the file's raw bytes (``pread(size, offset)``), and the file's name."""
        fd = ds.file.id.get_vfd_handle()
        return (lambda size, offset: os.pread(fd, size, offset)), ds.file.filename

    def _open_appender(self, target: Path) -> dict[str, Any]:
        f = self._h5open(target, "r+")
        try:
            meta = self._load(f, target)
        except BaseException:
            f.close()
            raise
        self._file, self._target = f, target
        _WRITERS.add(self)
        return meta

    def _create(self, target: Path) -> None:
        self._file, self._target = self._h5open(target, "w"), target
        self._layout = None
        _WRITERS.add(self)

    # ------------------------------------------------------------ writing
    def _filter(self) -> dict[str, Any]:
        """Compression filter plus a Fletcher-32 checksum per chunk, so damage is an error.

        Uncompressed data goes without: a checksum would force whole-chunk reads
        and cost random access its speed.
        """
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": self.level, "fletcher32": True}
        if self.compression == "lzf":
            return {"compression": "lzf", "fletcher32": True}
        if self.compression == "zstd":
            return {**hdf5plugin.Zstd(clevel=self.level), "fletcher32": True}
        return {}

    def _create_uniform(self, f: h5py.File, shape: tuple[int, ...], dtype: np.dtype) -> None:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        per_chunk = self.options["chunks"] or max(
            1, (PACKED_CHUNK_BYTES if self.compression != "none" else RAW_CHUNK_BYTES) // nbytes
        )
        f.create_dataset(
            "images", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
            chunks=(per_chunk, *shape), **self._filter(),
        )

    def _create_ragged(self, f: h5py.File) -> None:
        chunk = RAW_CHUNK_BYTES if self.compression == "none" else PACKED_DATA_CHUNK_BYTES
        f.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(chunk,), **self._filter())
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(1 << 13,))
        f.create_dataset("shapes", shape=(0, 3), maxshape=(None, 3), dtype=np.int64, chunks=(1 << 12, 3))
        f.create_dataset("dtypes", shape=(0,), maxshape=(None,), dtype="S3", chunks=(1 << 13,))

    @staticmethod
    def _append_rows(ds: h5py.Dataset, rows: np.ndarray) -> None:
        n = ds.shape[0]
        ds.resize(n + len(rows), axis=0)
        ds[n:] = rows

    def _append_raw_rows(self, ds: h5py.Dataset, rows: np.ndarray) -> None:
        """Append to an unfiltered dataset, whole chunks by direct chunk writes.

        ``write_direct_chunk`` hands each chunk's bytes to the file as they are:
        no selection machinery, no chunk cache copy (half the time of
        ``ds[a:b] = rows`` here). Rows up to the next chunk boundary and the
        partial last chunk go the ordinary way.
        """
        n, per = ds.shape[0], ds.chunks[0]
        ds.resize(n + len(rows), axis=0)
        head = min(len(rows), -n % per)
        if head:
            ds[n : n + head] = rows[:head]
        full = head + (len(rows) - head) // per * per
        rows = np.ascontiguousarray(rows)
        zeros = (0,) * (rows.ndim - 1)
        # With sync on, start the device writing every ~8 MiB: the final fsync
        # then waits for the tail, not for everything.
        kick = max(1, (8 << 20) // max(1, rows[:per].nbytes)) if self.options["sync"] else 0
        fd = ds.file.id.get_vfd_handle() if kick else -1
        for k, s in enumerate(range(head, full, per), 1):
            ds.id.write_direct_chunk((n + s, *zeros), rows[s : s + per])
            if kick and k % kick == 0:
                atomic.start_writeback(fd)
        if full < len(rows):
            ds[n + full :] = rows[full:]

    def _discard_writes(self) -> None:
        """Send every further write of the file being written to /dev/null.

        Used once that file is doomed (a write failed, or it is being discarded).
        After a failed write (full disk, file-size limit) HDF5 cannot close the
        objects of the file and crashes at interpreter exit closing them again;
        with writes that succeed (into /dev/null) everything closes cleanly. The
        file is a temporary in every writing mode, so nothing of value is lost.
        """
        try:
            fd = self._file.id.get_vfd_handle()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except Exception:
            pass

    def _reserve(self, nbytes: float) -> None:
        """Refuse a write that would not fit, before HDF5 is handed anything.

        HDF5 does not survive a failed write (its objects can no longer be
        closed and it crashes at exit), so a full disk or the file-size limit
        must be met here, in our code. Checked: free space on the filesystem and
        RLIMIT_FSIZE, with margin. (Reserving with fallocate would be race-free
        but leaves the reservation in the file: HDF5 does not truncate to its
        end of data.) Another process filling the disk in between can still
        beat the check.
        """
        nbytes = int(nbytes)
        fd = self._file.id.get_vfd_handle()
        size = os.fstat(fd).st_size
        vfs = os.fstatvfs(fd)
        free = vfs.f_bavail * vfs.f_frsize
        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if nbytes > free or (soft != resource.RLIM_INFINITY and size + nbytes > soft):
            reason = "the disk is full" if nbytes > free else f"the file-size limit ({soft} bytes) would be exceeded"
            raise ImgbenchError(
                f"cannot write to {self.path}: {reason} ({nbytes} more bytes needed, {free} free); "
                "the store was left as it was"
            )

    def _hold(self) -> None:
        """Keep every dataset of the file being written open until the writer closes.

        Closing a dataset's last handle writes out its chunk cache, and h5py does that in
        ``__dealloc__``, where a failed write (the disk filled after :meth:`_reserve`'s
        check) is printed as ``Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'``
        and otherwise lost. Held open, the cache is written inside a write or a flush,
        whose error is raised (and the file's writes then go to /dev/null).
        """
        for name in self._file:
            if name not in self._held and isinstance(self._file.get(name), h5py.Dataset):
                self._held[name] = self._file[name]

    def _write_failed(self, exc: BaseException) -> ImgbenchError:
        """A failed HDF5 write as one line; a full disk says so (HDF5's message spans lines)."""
        text = " ".join(str(exc).split())
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in text:
            return ImgbenchError(
                f"cannot write to {self.path}: no space left on device (the disk filled while writing); "
                "the store was left as it was; free some space and write again"
            )
        return ImgbenchError(f"writing to {self.path} failed: {text}")

    def _write(self, images, labels, start, checksums=None) -> None:
        nbytes = images.nbytes if isinstance(images, np.ndarray) else sum(im.nbytes for im in images)
        try:
            self._reserve(nbytes * 1.1 + 16 * len(images) + (2 << 20))
            with unraisable.capture() as lost:
                self._write_h5(images, labels, checksums)
                self._hold()
            if lost:
                raise lost[0]
            if self.options["sync"]:
                atomic.start_writeback(self._file.id.get_vfd_handle())
        except ImgbenchError:
            self._discard_writes()
            raise
        except H5_ERRORS as exc:
            self._discard_writes()
            raise self._write_failed(exc) from None

    def _write_h5(self, images, labels, checksums) -> None:
        f = self._file
        if isinstance(images, np.ndarray):
            kinds = {(images.shape[1:], images.dtype)}
        else:
            kinds = {(im.shape, im.dtype) for im in images}
        if self._layout is None:
            if len(kinds) == 1:
                self._create_uniform(f, *next(iter(kinds)))
                self._layout = "uniform"
            else:
                self._create_ragged(f)
                self._layout = "ragged"
        if self._layout == "uniform":
            ds = f["images"]
            if kinds == {(ds.shape[1:], ds.dtype)}:
                rows = images if isinstance(images, np.ndarray) else np.stack(images)
                if self.compression == "none":
                    self._append_raw_rows(ds, rows)
                else:
                    self._append_rows(ds, rows)
            else:
                self._to_ragged()
        if self._layout == "ragged":
            f = self._file
            items = list(images)
            sizes = np.array([im.nbytes for im in items], dtype=np.int64)
            blob = np.concatenate([im.reshape(-1).view(np.uint8) for im in items])
            self._append_rows(f["data"], blob)
            offsets = f["offsets"]
            self._append_rows(offsets, offsets[-1] + np.cumsum(sizes))
            self._append_rows(f["shapes"], np.array([im.shape + (0,) * (3 - im.ndim) for im in items], np.int64))
            self._append_rows(f["dtypes"], np.array([DTYPE_CODES[im.dtype].encode() for im in items], "S3"))
        if labels is not None:
            if "labels" not in f:
                f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(ROW_CHUNK,))
            self._append_rows(f["labels"], labels)
        if checksums is not None:
            if "checksums" not in f:
                self._create_checksums(f)
            self._append_rows(f["checksums"], checksums)

    @staticmethod
    def _create_checksums(f: h5py.File, data: np.ndarray | None = None) -> None:
        """Digests are random bits: no compression, but a Fletcher-32 per chunk so damage to
        them is reported as such rather than blamed on the images."""
        f.create_dataset(
            "checksums", shape=(0,) if data is None else None, data=data, maxshape=(None,),
            dtype=np.dtype("<u8"), chunks=(ROW_CHUNK,), fletcher32=True,
        )

    def _to_ragged(self) -> None:
        """Rewrite the uniform store being written into a fresh file with the ragged layout."""
        old, target = self._file, self._target
        self._held = {}
        fresh_path = atomic.temp_sibling(self.path)
        fresh = self._h5open(fresh_path, "w")
        try:
            self._create_ragged(fresh)
            ds = old["images"]
            n, per = ds.shape[0], ds.chunks[0]
            for s in range(0, n, per * 16):
                block = ds[s : s + per * 16]
                self._append_rows(fresh["data"], block.reshape(-1).view(np.uint8))
                sizes = np.full(len(block), block[0].nbytes, np.int64)
                self._append_rows(fresh["offsets"], fresh["offsets"][-1] + np.cumsum(sizes))
                shape = block.shape[1:] + (0,) * (4 - block.ndim)
                self._append_rows(fresh["shapes"], np.tile(np.array(shape, np.int64), (len(block), 1)))
                self._append_rows(fresh["dtypes"], np.full(len(block), DTYPE_CODES[ds.dtype].encode(), "S3"))
            if "labels" in old:
                fresh.create_dataset("labels", data=old["labels"][:], maxshape=(None,), chunks=(ROW_CHUNK,))
            if "checksums" in old:
                self._create_checksums(fresh, old["checksums"][:])
        except BaseException:
            fresh.close()
            atomic.remove(fresh_path)
            raise
        old.close()
        fresh.close()
        fresh_path.replace(target)
        self._file = self._h5open(target, "r+")
        self._layout = "ragged"

    def _flush(self, meta) -> None:
        try:
            self._reserve((4 << 20) + os.fstat(self._file.id.get_vfd_handle()).st_size // 100)
            with unraisable.capture() as lost:
                self._flush_h5(meta)
            if lost:
                raise lost[0]
        except H5_ERRORS as exc:
            self._discard_writes()
            raise self._write_failed(exc) from None

    def _flush_h5(self, meta) -> None:
        f = self._file
        meta = dict(meta)
        attrs = meta.pop("attrs")
        meta["layout"] = self._layout
        f.attrs["imgbench"] = json.dumps(meta)
        if "attrs" in f:
            del f["attrs"]
        f.create_dataset("attrs", data=json.dumps(attrs))
        f.flush()

    def _close_writer(self, commit: bool) -> None:
        if self._file is None:
            return
        if not commit:
            self._discard_writes()
        self._held = {}
        try:
            self._file.close()
        finally:
            self._file = None
        if commit and self.options["sync"] and self._target is not None:
            atomic.fsync_path(self._target)

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        self._datasets, self._guards = {}, {}
        self._chunk_table, self._slab, self._kind = None, None, None
        if self._file is not None:
            self._file.close()
            self._file = None

    def _reader_handles(self) -> Any:
        handles = (self._file, self._datasets, self._slab)
        self._file, self._datasets, self._guards = None, {}, {}
        self._chunk_table, self._slab, self._kind = None, None, None
        return handles

    def _table(self) -> ChunkTable | None:
        """Where each uncompressed chunk lies in the file, built on first random read."""
        if self._chunk_table is None:
            table = ChunkTable.build(self._ds("images"), self._count) if self.compression == "none" else None
            self._chunk_table = table if table is not None else False
        return self._chunk_table or None

    def _image_kind(self) -> tuple[tuple[int, ...], np.dtype]:
        """Shape and dtype of every image in the uniform layout (h5py's ``ds.shape`` costs ~8 µs a call)."""
        if self._kind is None:
            ds = self._ds("images")
            self._kind = (ds.shape[1:], ds.dtype)
        return self._kind

    def _read_one_into(self, index: int, out: np.ndarray) -> None:
        """Image ``index`` of the uniform layout into ``out``, the fastest way the file allows.

        Uncompressed: one ``pread`` at the offset the chunk table gives (~2 µs;
        HDF5's own selection machinery costs ~20 µs per call). Otherwise one
        low-level ``H5Dread`` of a hyperslab with the memory space reused.
        """
        table = self._table()
        if table is not None:
            table.read_into(index, out)
            return
        ds = self._ds("images")
        guard = self._guard("images")
        if guard is not None:
            guard.check_rows(index, index + 1, f"image {index}")
        if self._slab is None:
            self._slab = (h5py.h5s.create_simple(ds.shape[1:]), ds.id.get_space())
        mspace, fspace = self._slab
        shape = self._image_kind()[0]
        fspace.select_hyperslab((index,) + (0,) * len(shape), (1, *shape))
        ds.id.read(mspace, fspace, out)

    def _ragged_one(
        self, i: int, offsets: np.ndarray, shapes: np.ndarray, codes: np.ndarray, blob, index: int | None = None
    ) -> np.ndarray:
        """Image ``i`` of the given index arrays (``index`` is its number in the store, for messages)."""
        index = i if index is None else index
        dims = tuple(int(d) for d in shapes[i] if d)
        dtype = dtype_from_code(codes[i].decode("ascii", "replace"))
        size = int(offsets[i + 1] - offsets[i])
        if len(dims) not in (2, 3) or int(np.prod(dims)) * dtype.itemsize != size:
            raise CorruptStoreError(f"{self.path}: image {index} has shape {dims} {dtype} but {size} stored bytes")
        raw = blob(int(offsets[i]), int(offsets[i + 1]))
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(dims)

    def _read(self, fn, what: str | int = "") -> Any:
        """Run an HDF5 read; its errors mean a damaged file. ``what`` (an int: that image) names what was read."""
        try:
            return fn()
        except (ImgbenchError, IndexError):
            raise
        except H5_ERRORS as exc:
            if isinstance(what, int):
                what = f"image {what}"
            raise CorruptStoreError(
                f"{self.path}: reading {what + ' ' if what else ''}failed, the file is damaged ({exc})"
            ) from None

    def _get(self, index: int) -> np.ndarray:
        def read() -> np.ndarray:
            if self._layout == "uniform":
                shape, dtype = self._image_kind()
                out = np.empty(shape, dtype=dtype)
                self._read_one_into(index, out)
                return out
            off = self._ds("offsets")[index : index + 2]
            data = self._ds("data")
            guard = self._guard("data")
            if guard is not None and off[1] > off[0]:
                guard.check_rows(int(off[0]), int(off[1]), f"image {index}")
            return self._ragged_one(
                0, off - off[0], self._ds("shapes")[index : index + 1], self._ds("dtypes")[index : index + 1],
                lambda s, e: data[off[0] + s : off[0] + e].tobytes(), index,
            )

        return self._read(read, index)

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        if self._layout == "uniform":
            # One small read per image in file order (h5py's fancy indexing costs
            # ~0.2 ms per index); in order, images sharing a compressed chunk are
            # decompressed once while it sits in the chunk cache.
            ds = self._ds("images")
            out = np.empty((len(indices), *ds.shape[1:]), dtype=ds.dtype)

            def read() -> np.ndarray:
                table = self._table()
                if table is not None:
                    table.read_many_into(indices, out)
                    return out
                order = np.argsort(indices, kind="stable")
                i = None
                try:
                    for j, i in zip(order.tolist(), indices[order].tolist()):
                        self._read_one_into(i, out[j])
                except H5_ERRORS as exc:  # name the image whose chunk failed its filter or Fletcher-32
                    raise CorruptStoreError(
                        f"{self.path}: reading image {i} failed, the file is damaged ({exc})"
                    ) from None
                return out

            return self._read(read)
        return stack_if_uniform([self._get(int(i)) for i in indices])

    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        def read():
            if self._layout == "uniform":
                ds = self._ds("images")
                guard = self._guard("images")
                if guard is not None:
                    guard.check_all()
                out = np.empty(ds.shape, dtype=ds.dtype)
                ds.read_direct(out)
                return out
            offsets, shapes, codes = self._ds("offsets")[:], self._ds("shapes")[:], self._ds("dtypes")[:]
            guard = self._guard("data")
            if guard is not None:
                guard.check_all()
            data = self._ds("data")[:]
            images = [
                self._ragged_one(i, offsets, shapes, codes, lambda s, e: data[s:e])
                for i in range(self._count)
            ]
            return stack_if_uniform(images)

        return self._read(read)

    def _get_labels(self) -> np.ndarray | None:
        return self._read(lambda: self._ds("labels")[:].astype(np.int64))

    def _get_checksums(self) -> np.ndarray | None:
        if not self._count:
            return np.zeros(0, np.uint64)  # an empty store has no dataset yet

        def read() -> np.ndarray:
            ds = self._ds("checksums")
            if ds.shape != (self._count,) or ds.dtype.kind != "u" or ds.dtype.itemsize != 8:
                raise CorruptStoreError(f"{self.path}: 'checksums' is {ds.shape} {ds.dtype}, not one uint64 per image")
            # The shape is metadata: before allocating by it, check the file really stores that
            # many bytes (the dataset is uncompressed, so an honest one stores at least 8 per image).
            stored = ds.id.get_storage_size()
            if stored < 8 * self._count:
                raise CorruptStoreError(
                    f"{self.path}: 'checksums' declares {self._count} digests but stores only {stored} bytes"
                )
            out = np.empty(self._count, np.dtype("<u8"))
            ds.read_direct(out)
            return out.astype(np.uint64, copy=False)

        return self._read(read, "the checksums")


class RemoteHDF5Store(RemoteHDF5Reading, RemoteStore, HDF5Store):
    """An HDF5 store read from a URL (``s3://bucket/x.h5``): the local reader, h5py on an fsspec file
    object (:class:`imgbench.storage.hdf5.remote.RemoteHDF5Reading`)."""

    option_defaults = {**HDF5Store.option_defaults, "block_size": BLOCK_SIZE}


#: writers with a file open in this process (their files are temporaries until they commit)
_WRITERS: weakref.WeakSet[HDF5Store] = weakref.WeakSet()


@atexit.register
def _discard_unfinished_writers() -> None:
    """At exit, send the writes of every writer still open to /dev/null before h5py closes its objects.

    A process that ends mid-write (a Dask worker shut down while its task was writing a
    shard) never commits, yet h5py flushes the doomed temporary at interpreter exit; on a
    full disk that printed ``Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'``
    once per object, or crashed. Registered after h5py's own exit hook, so it runs first.
    """
    for writer in list(_WRITERS):
        if writer._file is not None:
            writer._discard_writes()

