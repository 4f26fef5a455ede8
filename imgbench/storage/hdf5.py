"""HDF5 backend: images as one n-dimensional dataset, compressed by HDF5 filters.

Layout (one file, readable with plain h5py; zstd needs ``import hdf5plugin``):

- root attribute ``imgbench``: JSON with format, version, backend, compression,
  level, count, labels flag and ``layout``;
- dataset ``attrs``: scalar string, JSON of the user's attrs;
- layout ``uniform`` (every image has one shape and dtype): ``images`` of shape
  ``(N, H, W[, C])``; read all of it with ``f["images"][:]``;
- layout ``ragged`` (shapes or dtypes differ): ``data`` (uint8, all images'
  raw little-endian C-order bytes back to back), ``offsets`` (int64, N+1: image
  ``i`` is ``data[offsets[i]:offsets[i+1]]``), ``shapes`` (int64, N x 3; the
  third entry 0 for 2-D images) and ``dtypes`` (numpy dtype strings such as
  ``<u2``);
- ``labels`` (int64, N) when the store is labelled;
- ``checksums`` (uint64 little-endian, N, with a Fletcher-32 checksum per chunk)
  when the metadata has ``"checksum": "xxh3_64"``: the xxh3-64 digest of each
  image's raw little-endian C-order pixel bytes seeded with the image's label
  (0 when unlabelled; a negative label as its two's-complement uint64;
  ``xxhash.xxh3_64_intdigest(pixels, seed=label)``), so a flipped bit is found
  in any layout and compression, raw ``none`` included, and in ``labels`` too.
  Stores written before checksums have neither the key nor the
  dataset, and appending to them keeps it that way.

Compression is an HDF5 filter on the chunks: ``gzip`` (level 0-9), ``lzf``,
``zstd`` (hdf5plugin, level 1-22), each with a Fletcher-32 checksum per chunk
so a damaged chunk is an error, not wrong pixels. Uncompressed data uses ~1 MiB chunks, read
with the chunk cache off so that one image costs one small direct read and the
whole store one pass at memory speed (HDF5 allocates whole chunks, so at most
1 MiB is unused); compressed data uses small chunks (~16 KiB or one image) so
reading one image decompresses little else.

HDF5 files are not crash-safe when modified in place, so appending (mode 'a')
copies the file, appends to the copy and swaps it in on close: the old store
stays intact and readable throughout, at the cost of one file copy per append
session. One appender at a time (a second gets StoreLockedError). Images,
labels and checksums live in the one file, so the rename that publishes it
publishes them together: no image is ever visible without its digest.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from imgbench.core import atomic, checksum
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_CODES, dtype_from_code
from imgbench.core.store import Store, stack_if_uniform
from imgbench.core.transport import RemoteStore

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_LEVELS = {"none": None, "gzip": (0, 9, 4), "lzf": None, "zstd": (1, 22, 3)}
_RAW_CHUNK_BYTES = 1 << 20
_PACKED_CHUNK_BYTES = 16 << 10
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
#: chunk cache for compressed datasets: 4 MiB (~256 chunks of 16 KiB), prime slot count
_COMPRESSED_CACHE_BYTES = 4 << 20
_COMPRESSED_CACHE_SLOTS = 25013
#: rows per chunk of the small per-image datasets (labels, checksums)
_ROW_CHUNK = 1 << 13
#: pixel dtypes imgbench writes (little-endian or byte-order free)
_IMAGE_DTYPES = ("|u1", "<u2", "<i2", "<f4")
#: HDF5 filters imgbench writes; any other (shuffle, a plugin HDF5 would look for on disk) is refused
_FILTER_ZSTD = 32015
_COMPRESSORS = (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_LZF, _FILTER_ZSTD)
_ALLOWED_FILTERS = (*_COMPRESSORS, h5py.h5z.FILTER_FLETCHER32)
#: largest chunk (uncompressed bytes) accepted beyond one image: imgbench writes ~1 MiB
#: uncompressed and ~16-64 KiB compressed chunks (or one image), the ``chunks`` option aside
_MAX_CHUNK_BYTES = 64 << 20
#: best ratio any of the filters reaches (zstd on zeros); stored bytes x this bounds what a
#: compressed dataset may declare
_MAX_RATIO = 1 << 15
#: deflate output above which a chunk is test-inflated (bounded) before HDF5 sees it
_INFLATE_FREE = 16 << 20


class _ChunkGuard:
    """Checks each compressed chunk of a dataset once, before HDF5's filters decompress it.

    HDF5's deflate filter grows its output without bound and hdf5plugin's zstd
    mallocs whatever size the frame declares, and HDF5 accepts an output larger
    than the chunk: a small chunk could cost the reader gigabytes. A chunk
    passes if its stored size is what compressing ``nbytes`` can give, a zstd
    frame declares exactly ``nbytes`` and a deflate stream that could inflate
    past a few MiB does not inflate past ``nbytes``.
    """

    def __init__(
        self, ds: h5py.Dataset, code: int, comp_index: int, fletcher: bool,
        pread: Callable[[int, int], bytes], where: str,
    ):
        """``pread(size, offset)`` reads the file's bytes; ``where`` names the file in errors."""
        self.ds, self.code, self.comp_bit, self.fletcher = ds, code, 1 << comp_index, fletcher
        self.per, self.rest = ds.chunks[0], (0,) * (ds.ndim - 1)
        self.nbytes = int(np.prod(ds.chunks)) * ds.dtype.itemsize
        self.pread, self.where = pread, where
        self.ok = np.zeros(-(-ds.shape[0] // self.per), bool)

    def check_rows(self, start: int, stop: int, what: str = "") -> None:
        """Check the chunks holding rows ``start:stop``; ``what`` (e.g. "image 7") names them in errors."""
        for c in range(start // self.per, -(-stop // self.per)):
            if not self.ok[c]:
                info = self.ds.id.get_chunk_info_by_coord((c * self.per, *self.rest))
                self._verify(c, info.byte_offset, info.size, info.filter_mask, what)

    def check_all(self) -> None:
        if self.ok.all():
            return
        found: list[tuple[int, int, int, int]] = []
        self.ds.id.chunk_iter(lambda i: found.append((i.chunk_offset[0], i.byte_offset, i.size, i.filter_mask)))
        if len(found) != len(self.ok):
            raise CorruptStoreError(f"{self.where}: {self.ds.name} lacks stored chunks")
        for row, offset, size, mask in found:
            c, r = divmod(row, self.per)
            if r or not 0 <= c < len(self.ok):
                raise CorruptStoreError(f"{self.where}: {self.ds.name} has a chunk at row {row}")
            if not self.ok[c]:
                self._verify(c, offset, size, mask)

    def _verify(self, c: int, offset, size, mask, what: str = "") -> None:
        if not what and self.ds.name == "/images":
            last = min(self.ds.shape[0], (c + 1) * self.per) - 1
            what = f"image {last}" if last == c * self.per else f"images {c * self.per} to {last}"
        where = f"{self.where}: {what + ', ' if what else ''}chunk {c} of {self.ds.name}"
        tail = 4 if self.fletcher else 0
        if offset is None or size is None or mask & ~self.comp_bit:
            raise CorruptStoreError(f"{where} is missing or skipped a filter")
        if mask & self.comp_bit:  # the compressor was skipped (optional filter): stored raw
            if size != self.nbytes + tail:
                raise CorruptStoreError(f"{where} stores {size} bytes for {self.nbytes} uncompressed")
            self.ok[c] = True
            return
        if size > self.nbytes + self.nbytes // 16 + 1024 + tail or size <= tail:
            raise CorruptStoreError(f"{where} stores {size} bytes, more than compressing {self.nbytes} gives")
        if self.code == _FILTER_ZSTD:
            import zstandard

            head = self.pread(min(18, size - tail), offset)
            try:
                declared = zstandard.frame_content_size(head)
            except zstandard.ZstdError:
                declared = -1
            if declared != self.nbytes:
                raise CorruptStoreError(f"{where}: its zstd frame declares {declared} bytes, not {self.nbytes}")
        elif self.code == h5py.h5z.FILTER_DEFLATE and (size - tail) * 1032 > _INFLATE_FREE:
            body = self.pread(size - tail, offset)
            try:
                out = zlib.decompressobj().decompress(body, self.nbytes + 1)
            except zlib.error:
                raise CorruptStoreError(f"{where}: its deflate stream is damaged") from None
            if len(out) > self.nbytes:
                raise CorruptStoreError(f"{where} inflates past its {self.nbytes} bytes")
        self.ok[c] = True


class _ChunkTable:
    """Byte offsets of an uncompressed chunked dataset's chunks, for direct ``pread``.

    Only built when the file holds exactly what imgbench writes: chunked along
    the first axis only, no filters, every chunk allocated, in order, inside
    the file, little-endian. Anything else returns None and reads go through
    HDF5, which checks its own structures.
    """

    def __init__(self, fd: int, offsets: np.ndarray, per: int, nbytes: int, limit: int):
        self.fd, self.offsets, self.per, self.nbytes, self.limit = fd, offsets, per, nbytes, limit

    @classmethod
    def build(cls, ds: h5py.Dataset, count: int) -> _ChunkTable | None:
        try:
            dsid = ds.id
            dcpl = dsid.get_create_plist()
            if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_nfilters() != 0 or ds.chunks is None:
                return None
            if ds.dtype.byteorder == ">" or ds.chunks[1:] != ds.shape[1:] or ds.shape[0] != count:
                return None
            per, nbytes = ds.chunks[0], int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
            found: list[tuple[int, int, int, int]] = []
            dsid.chunk_iter(lambda info: found.append(
                (info.chunk_offset[0], info.byte_offset, info.size, info.filter_mask)))
            table = np.array(sorted(found), dtype=np.int64).reshape(-1, 4)
            fd = ds.file.id.get_vfd_handle()
            size = os.fstat(fd).st_size
        except Exception:
            return None
        want = -(-count // per)
        if (
            len(table) != want
            or not (table[:, 0] == np.arange(want) * per).all()
            or not (table[:, 2] == per * nbytes).all()
            or (table[:, 3] != 0).any()
            or (table[:, 1] < 0).any()
            or (table[:, 1] + table[:, 2] > size).any()
        ):
            return None
        return cls(fd, table[:, 1].copy(), per, nbytes, size)

    def read_many_into(self, indices: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = image indices[j]``, reading in file order (sequential on a cold disk)."""
        chunk, within = np.divmod(indices, self.per)
        where = self.offsets[chunk] + within * self.nbytes
        order = np.argsort(where, kind="stable")
        flat, nb, fd = memoryview(out.reshape(-1).view(np.uint8)), self.nbytes, self.fd
        for j, offset in zip(order.tolist(), where[order].tolist()):
            if os.preadv(fd, [flat[j * nb : (j + 1) * nb]], offset) != nb:
                raise CorruptStoreError(f"image {int(indices[j])}: the file is truncated")

    def read_into(self, index: int, out: np.ndarray) -> None:
        chunk, within = divmod(index, self.per)
        got = os.preadv(self.fd, [out], int(self.offsets[chunk]) + within * self.nbytes)
        if got != self.nbytes:
            raise CorruptStoreError(f"image {index}: read {got} of {self.nbytes} bytes, the file is truncated")


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
        spec = _LEVELS[compression]
        if spec is None:
            if level is not None:
                raise UnsupportedError(f"compression {compression!r} takes no level; drop level={level!r}")
            return None
        low, high, default = spec
        if level is None:
            return default
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not low <= level <= high:
            raise UnsupportedError(
                f"level {level!r} is out of range for {compression!r}: use an integer from {low} to {high}"
            )
        return int(level)

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Every HDF5 filter here is lossless on every supported dtype."""

    def _init_handles(self) -> None:
        self._file: h5py.File | None = None
        self._datasets: dict[str, h5py.Dataset] = {}
        self._layout: str | None = None
        self._target: Path | None = None
        self._chunk_table: _ChunkTable | None | bool = None  # False: not usable for this file
        self._slab: tuple[Any, Any] | None = None  # (memory space, file space) reused by one-image reads
        self._kind: tuple[tuple[int, ...], np.dtype] | None = None
        self._guards: dict[str, _ChunkGuard | None] = {}

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            with open(path, "rb") as f:
                return f.read(8) == _SIGNATURE
        except OSError:
            return False

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is None and probe.read(None, 8) == _SIGNATURE

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
            text = str(exc)
            if "unable to lock" in text.lower() or "locking" in text.lower():
                raise ImgbenchError(
                    f"cannot open {target}: HDF5 file locking refused it ({text}); another program has it open "
                    "for writing, or the filesystem has no locks (NFS: pass locking=False or set "
                    "HDF5_USE_FILE_LOCKING=FALSE)"
                ) from None
            raise CorruptStoreError(f"{target} is not a readable HDF5 file: {text}") from None

    @staticmethod
    def _dataset(
        f: h5py.File, name: str, target: Path, required: bool = True, backed: bool = True
    ) -> h5py.Dataset | None:
        """Dataset ``name`` if it is one imgbench could have written, else CorruptStoreError.

        A soft or external link, external raw storage or a virtual dataset would make
        HDF5 read other files (any path the file names); an unknown filter makes it
        search the plugin path. Each chunked dataset must have every chunk stored
        (imgbench writes them all), so no declared length can outgrow the file, and
        chunks of sane size (unless not ``backed``: the reader checks the stored size
        itself). Nothing here follows a link or reads raw data.
        """
        links = f.id.links
        if not links.exists(name.encode()):
            if required:
                raise CorruptStoreError(f"{target}: dataset {name!r} is missing")
            return None
        if links.get_info(name.encode()).type != h5py.h5l.TYPE_HARD:
            raise CorruptStoreError(f"{target}: {name!r} is a link to elsewhere, not a dataset of the store")
        obj = f[name]
        if not isinstance(obj, h5py.Dataset):
            raise CorruptStoreError(f"{target}: {name!r} is a {type(obj).__name__}, not a dataset")
        dcpl = obj.id.get_create_plist()
        layout = dcpl.get_layout()
        if layout not in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT) or dcpl.get_external_count():
            raise CorruptStoreError(f"{target}: {name!r} keeps its data outside the file (external or virtual)")
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        if any(code not in _ALLOWED_FILTERS for code in filters):
            raise CorruptStoreError(f"{target}: {name!r} uses HDF5 filters {filters} imgbench never writes")
        if obj.dtype.hasobject and name != "attrs":
            raise CorruptStoreError(f"{target}: {name!r} has dtype {obj.dtype}")
        if layout == h5py.h5d.CHUNKED:
            chunks, shape = obj.chunks, obj.shape
            if chunks is None or len(shape) < 1 or tuple(chunks[1:]) != tuple(shape[1:]):
                raise CorruptStoreError(f"{target}: {name!r} is chunked {chunks} for shape {shape}")
            row = int(np.prod(shape[1:], dtype=np.float64)) * obj.dtype.itemsize
            if chunks[0] * row > max(_MAX_CHUNK_BYTES, row):
                raise CorruptStoreError(f"{target}: {name!r} has chunks of {chunks[0] * row} bytes")
            if backed and obj.id.get_num_chunks() != -(-shape[0] // chunks[0]):
                raise CorruptStoreError(
                    f"{target}: {name!r} declares {shape[0]} rows but lacks chunks to hold them"
                )
        elif filters:
            raise CorruptStoreError(f"{target}: {name!r} has filters without chunks")
        elif backed:
            need = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
            if obj.id.get_storage_size() < need:
                raise CorruptStoreError(f"{target}: {name!r} declares {need} bytes but stores fewer")
        return obj

    def _load(self, f: h5py.File, target: Path) -> dict[str, Any]:
        try:
            raw = f.attrs.get("imgbench")
            meta = json.loads(raw) if raw is not None else None
        except (*_H5_ERRORS, json.JSONDecodeError):
            raise CorruptStoreError(f"{target}: imgbench metadata attribute is unreadable") from None
        if not isinstance(meta, dict):
            raise CorruptStoreError(f"{target} is an HDF5 file without imgbench metadata (root attribute 'imgbench')")
        try:
            ds = self._dataset(f, "attrs", target, required=False)
            if ds is not None and (ds.shape != () or h5py.check_string_dtype(ds.dtype) is None):
                raise CorruptStoreError(f"{target}: the 'attrs' dataset is not one string")
            attrs_raw = ds[()] if ds is not None else b"{}"
            meta["attrs"] = json.loads(attrs_raw.decode() if isinstance(attrs_raw, bytes) else attrs_raw)
        except (*_H5_ERRORS, json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            raise CorruptStoreError(f"{target}: the 'attrs' dataset is unreadable") from None
        count = meta.get("count")
        layout = meta.get("layout")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise CorruptStoreError(f"{target}: metadata count {count!r} is not a number of images")
        try:
            if layout == "uniform":
                images = self._dataset(f, "images", target)
                shape, dtype = images.shape, images.dtype
                if (
                    dtype.str not in _IMAGE_DTYPES
                    or len(shape) not in (3, 4)
                    or min(shape[1:]) < 1
                    or (len(shape) == 4 and shape[3] > 4)
                ):
                    raise CorruptStoreError(f"{target}: 'images' is {shape} {dtype}, not images imgbench writes")
                need = count * int(np.prod(shape[1:], dtype=np.float64)) * dtype.itemsize
                stored = images.id.get_storage_size()
                compressed = images.chunks is not None and any(
                    images.id.get_create_plist().get_filter(i)[0] in _COMPRESSORS
                    for i in range(images.id.get_create_plist().get_nfilters())
                )
                if stored * (_MAX_RATIO if compressed else 1) < need:
                    raise CorruptStoreError(
                        f"{target}: {count} images of {shape[1:]} {dtype} need {need} bytes, the file stores {stored}"
                    )
                length = shape[0]
            elif layout == "ragged":
                data = self._dataset(f, "data", target)
                index = {name: self._dataset(f, name, target) for name in ("offsets", "shapes", "dtypes")}
                if (
                    data.dtype.str != "|u1" or data.ndim != 1
                    or index["offsets"].dtype.str != "<i8" or index["offsets"].ndim != 1
                    or index["shapes"].dtype.str != "<i8"
                    or index["dtypes"].dtype.kind != "S" or index["dtypes"].dtype.itemsize > 8
                ):
                    raise CorruptStoreError(f"{target}: ragged datasets have foreign dtypes or shapes")
                offsets = index["offsets"][:]
                length = len(offsets) - 1
                if (
                    length < 0
                    or offsets[0] != 0
                    or (np.diff(offsets) < 0).any()
                    or offsets[-1] > data.shape[0]
                    or index["shapes"].shape != (length, 3)
                    or index["dtypes"].shape != (length,)
                ):
                    raise CorruptStoreError(f"{target}: ragged index (offsets/shapes/dtypes) is inconsistent")
            elif layout is None and count == 0:
                length = 0
            else:
                raise CorruptStoreError(f"{target}: unknown layout {layout!r}")
            if meta.get("labels"):
                labels = self._dataset(f, "labels", target)
                if labels.shape != (count,) or labels.dtype.kind not in "iu" or labels.dtype.itemsize > 8:
                    raise CorruptStoreError(f"{target}: 'labels' does not hold one label per image")
            # An empty store records the algorithm before it has a dataset to hold digests.
            if meta.get("checksum") == checksum.ALGORITHM and count:
                # Not ``backed``: a hollow 'checksums' fails when read, images stay readable.
                if self._dataset(f, "checksums", target, backed=False).shape != (count,):
                    raise CorruptStoreError(f"{target}: 'checksums' does not hold one checksum per image")
        except (*_H5_ERRORS, AttributeError) as exc:
            raise CorruptStoreError(f"{target}: store datasets are missing or damaged ({exc})") from None
        if length != count:
            raise CorruptStoreError(f"{target}: metadata counts {count} images, the datasets hold {length}")
        self._layout = layout
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
                    dapl.set_chunk_cache(_COMPRESSED_CACHE_SLOTS, _COMPRESSED_CACHE_BYTES, 1.0)
                ds = h5py.Dataset(h5py.h5d.open(self._file.id, name.encode(), dapl))
            else:
                ds = self._file[name]
            self._datasets[name] = ds
        return ds

    def _guard(self, name: str) -> _ChunkGuard | None:
        """The chunk checker of compressed dataset ``name`` (None when it is not compressed)."""
        if name not in self._guards:
            ds = self._ds(name)
            dcpl = ds.id.get_create_plist()
            codes = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
            comp = [i for i, code in enumerate(codes) if code in _COMPRESSORS]
            self._guards[name] = (
                _ChunkGuard(ds, codes[comp[0]], comp[0], h5py.h5z.FILTER_FLETCHER32 in codes, *self._chunk_source(ds))
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
        return meta

    def _create(self, target: Path) -> None:
        self._file, self._target = self._h5open(target, "w"), target
        self._layout = None

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
            1, (_PACKED_CHUNK_BYTES if self.compression != "none" else _RAW_CHUNK_BYTES) // nbytes
        )
        f.create_dataset(
            "images", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
            chunks=(per_chunk, *shape), **self._filter(),
        )

    def _create_ragged(self, f: h5py.File) -> None:
        chunk = _RAW_CHUNK_BYTES if self.compression == "none" else 64 << 10
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

    def _write(self, images, labels, start, checksums=None) -> None:
        nbytes = images.nbytes if isinstance(images, np.ndarray) else sum(im.nbytes for im in images)
        try:
            self._reserve(nbytes * 1.1 + 16 * len(images) + (2 << 20))
            self._write_h5(images, labels, checksums)
            if self.options["sync"]:
                atomic.start_writeback(self._file.id.get_vfd_handle())
        except ImgbenchError:
            self._discard_writes()
            raise
        except _H5_ERRORS as exc:
            self._discard_writes()
            raise ImgbenchError(f"writing to {self.path} failed: {exc}") from exc

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
                f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(_ROW_CHUNK,))
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
            dtype=np.dtype("<u8"), chunks=(_ROW_CHUNK,), fletcher32=True,
        )

    def _to_ragged(self) -> None:
        """Rewrite the uniform store being written into a fresh file with the ragged layout."""
        old, target = self._file, self._target
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
                fresh.create_dataset("labels", data=old["labels"][:], maxshape=(None,), chunks=(_ROW_CHUNK,))
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
            self._flush_h5(meta)
        except _H5_ERRORS as exc:
            self._discard_writes()
            raise ImgbenchError(f"writing to {self.path} failed: {exc}") from exc

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

    def _table(self) -> _ChunkTable | None:
        """Where each uncompressed chunk lies in the file, built on first random read."""
        if self._chunk_table is None:
            table = _ChunkTable.build(self._ds("images"), self._count) if self.compression == "none" else None
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
        except _H5_ERRORS as exc:
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
                except _H5_ERRORS as exc:  # name the image whose chunk failed its filter or Fletcher-32
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


class _RemoteFile:
    """The fsspec file h5py reads a remote store through, remembering why a read failed.

    h5py turns an exception raised in a file object's read into a generic HDF5
    error; the reader raises the remembered failure instead (a network error
    is not damage).
    """

    def __init__(self, f: Any, error: Callable[[str, BaseException], BaseException]):
        self.f, self.error, self.failure = f, error, None

    def _do(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.failure = self.error("the file", exc)
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def read(self, size: int = -1) -> bytes:
        return self._do(lambda: self.f.read(size))

    def readinto(self, buf: Any) -> int:
        return self._do(lambda: self.f.readinto(buf))

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (under h5py's lock: h5py seeks this same object)."""
        from h5py._objects import phil

        with phil:
            self.f.seek(offset)
            return self.read(size)

    def close(self) -> None:
        self.f.close()


class RemoteHDF5Store(RemoteStore, HDF5Store):
    """An HDF5 store read from a URL (``s3://bucket/x.h5``): h5py on an fsspec file object.

    Opening, the checks of every dataset (hard links only, no external storage,
    imgbench's filters, sizes backed by stored bytes) and the chunk guard
    against decompression bombs are the local reader's; reads go through
    fsspec's read-ahead cache of ``block_size`` bytes (option, default 2 MiB)
    instead of one ``pread`` per image.
    """

    option_defaults = {**HDF5Store.option_defaults, "block_size": 2 << 20}

    def _check_options(self) -> None:
        size = self.options["block_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise UnsupportedError(f"block_size must be a positive number of bytes, got {size!r}")
        super()._check_options()

    def _init_handles(self) -> None:
        super()._init_handles()
        self._fobj: _RemoteFile | None = None

    @contextlib.contextmanager
    def _surfacing(self) -> Iterator[None]:
        """Raise the remote failure behind an HDF5 error rather than calling the file damaged."""
        try:
            yield
        except CorruptStoreError:
            fobj = self._fobj
            failure = fobj.failure if fobj is not None else None
            if failure is None:
                raise
            fobj.failure = None
            raise failure from None

    def _h5open(self, target: Any, mode: str, source: Any = None) -> h5py.File:
        fs, root = self._remote_fs()
        f = self._remote_call("the file", lambda: fs.open(root, "rb", block_size=self.options["block_size"],
                                                          cache_type="readahead"))
        self._fobj = _RemoteFile(f, self._remote_error)
        return super()._h5open(target, mode, source=self._fobj)

    def _open_reader(self) -> dict[str, Any]:
        try:
            with self._surfacing():
                return super()._open_reader()
        except BaseException:
            self._close_file_object()
            raise

    def _read(self, fn, what: str | int = "") -> Any:
        with self._surfacing():
            return super()._read(fn, what)

    def _chunk_source(self, ds: h5py.Dataset) -> tuple[Callable[[int, int], bytes], str]:
        return self._fobj.pread, str(self.path)

    def _table(self) -> None:
        """No direct ``pread`` of chunks: reads go through h5py and the file object's cache."""
        return None

    def _close_file_object(self) -> None:
        fobj, self._fobj = self._fobj, None
        if fobj is not None:
            with contextlib.suppress(Exception):
                fobj.close()

    def _close_reader(self) -> None:
        super()._close_reader()
        self._close_file_object()

    def _reader_handles(self) -> Any:
        handles = (super()._reader_handles(), self._fobj)
        self._fobj = None
        return handles
