"""Zarr backend: images in zarr v3 arrays whose chunks live in shard objects.

A store is a zarr v3 group (a directory) that plain zarr-python reads:

- ``zarr.json``: the group metadata. Its attribute ``imgbench`` is the **commit
  record**: format, version, backend, compression, level, ``count``, the labels
  flag, the user's ``attrs``, ``uniform_count`` (U), ``image`` (``{"shape",
  "dtype"}`` of the uniform images, or null) and ``dtype_ids`` (id -> dtype).
  ``count`` in this record is the truth: arrays may be longer (an append that
  did not commit), readers ignore everything beyond it.
- ``images`` (U, H, W[, C]): images 0 .. U-1, the first run of images that share
  one shape and dtype (all of them in a store of uniform images).
- images U .. count-1 (only when shapes or dtypes differ): ``data`` (uint8, the
  images' raw little-endian C-order bytes back to back), ``offsets`` (int64,
  R+1 with R = count - U; image U+j is ``data[offsets[j]:offsets[j+1]]``),
  ``shapes`` (int64, R x 3, the third entry 0 for 2-D images) and ``dtypes``
  (uint8 ids, see ``dtype_ids``).
- ``labels`` (int64, count) when the store is labelled.
- ``checksums`` (uint64, count) when the record has ``"checksum": "xxh3_64"``:
  the xxh3-64 digest of each image's raw little-endian C-order pixel bytes
  seeded with the image's label (0 when unlabelled; a negative label as its
  two's-complement uint64; ``xxhash.xxh3_64_intdigest(pixels, seed=label)``),
  so a damaged image is named even where a chunk's CRC cannot say which image
  it held, and a changed label is found too. Written like ``labels``, before
  the commit record that counts them; stores written before checksums have
  neither the key nor the array, and appending to them keeps it that way.

Every array uses the sharding codec: inner chunks of ~128 KiB (the unit zarr
decodes; zarr spends ~0.1-0.5 ms of Python per chunk, so tiny chunks make bulk
reads slow, while a random read decodes one chunk) inside shard objects of
~16 MiB, so 10,000 CIFAR images are two files and a million CT slices some
30,000, not a million. Shard files are named ``images/c.0.0.0.0`` ... (chunk-key
separator ``.``: one flat directory per array). Inner chunks carry a CRC-32C
(so do zarr's shard indexes), so a bit flip or truncation is an error for every
compression: ``none``, ``zstd`` (level 1-22, default 3) and ``blosc`` (lz4
inside blosc, level 0-9, default 5) compress ``images`` and ``data``; the small
per-image arrays (labels, checksums, offsets, shapes, dtypes) are always zstd
level 3, so their zero-padded last chunk costs no disk. Options (used when an
array is created): ``shard_images``, ``chunk_images``, ``threads`` (zarr's
``async.concurrency`` while imgbench calls zarr; a process-wide setting) and
``sync``.

Reading with plain zarr-python (``pip install zarr>=3``)::

    g = zarr.open_group("ct.zarr", mode="r")
    meta = g.attrs["imgbench"]; n, u = meta["count"], meta["uniform_count"]
    first = g["images"][:u]                      # (u, H, W[, C]) when u > 0
    off = g["offsets"][: n - u + 1]              # only when n > u
    data, shapes, ids = g["data"][: off[-1]], g["shapes"][: n - u], g["dtypes"][: n - u]
    image = lambda j: data[off[j]:off[j + 1]].view(meta["dtype_ids"][str(ids[j])]).reshape(
        [d for d in shapes[j] if d])            # image u + j
    labels = g["labels"][:n] if meta["labels"] else None
    sums = g["checksums"][:n] if meta.get("checksum") and n else None  # xxh3_64 of each image, seed = label

Appending (mode ``a``) happens in place and is crash-safe without copying the
store: every object is written whole under a temporary name and renamed over
its key (zarr's ``LocalStore`` does this), new images go to positions beyond
``count``, and the commit record is written last (after a filesystem sync when
``sync``). The only objects rewritten are the partially filled last shard of
each array: zarr reads it, keeps its complete inner chunks byte for byte,
decodes and re-encodes the partially filled one with the old rows' values, and
renames the new shard over the old. A process killed at any moment leaves each
object old or new (never torn) next to the old record, or the new record after
all the data it counts; either way every counted image is whole, and the next
appender deletes the killed one's ``*.partial`` temporaries. An append costs
O(new images + one shard per array); copy-on-write (``in_place_append =
False``, as HDF5 does) would cost O(store) per append session for no extra
safety. One appender at a time (the base class's writer lock).

Readers see a snapshot: the count of the record they opened. They hold the
store's directory open (a ``w`` that replaces the store under them makes their
reads fail with "replaced", never return the new store's pixels), and keep the
one possibly-rewritten last shard of each array open once they have touched it,
so reading its index and then its chunk never mixes two versions of the file
(without that, a reader racing an appender fails its checksums).
Chunks a reader needs but cannot find are an error, never zeros (zarr would
return the fill value). Declared sizes are checked against the bytes really
stored before zarr allocates anything (hostile metadata cannot make a reader
allocate more than ~64k times the store's size), and every array's codecs must
be ones imgbench writes (no pickle, no third-party codec is ever run).

Storage goes through zarr's store abstraction (``_FileStore``, a ``LocalStore``
with the directory pinning above). ``RemoteZarrStore`` reads a store at a URL
(``s3://bucket/x.zarr``) through ``_RemoteZarr``, zarr's ``FsspecStore`` with
the same "missing chunk is an error" rule, and otherwise the very same checks;
it is not pinned (an object version or ETag check would be the equivalent).
Writing to a URL is refused (see ``imgbench.remote``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import zarr
import zstandard
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.buffer.cpu import NDBuffer
from zarr.core.sync import sync as _zsync
from zarr.registry import register_codec
from zarr.storage import FsspecStore, LocalStore

from imgbench.core import atomic, checksum, ownfiles
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_CODES, DTYPE_IDS, dtype_from_code, dtype_from_id
from imgbench.core.store import Store, check_meta, stack_if_uniform
from imgbench.core.transport import RemoteStore

T = TypeVar("T")

RECORD_KEY = "zarr.json"
_LEVELS: dict[str, tuple[int, int, int] | None] = {"none": None, "zstd": (1, 22, 3), "blosc": (0, 9, 5)}
#: target raw bytes of one inner chunk and of one shard
_CHUNK_BYTES = 128 << 10
_SHARD_BYTES = 16 << 20
#: inner chunks per shard at most (each costs 16 bytes of shard index, read on every random access)
_MAX_CHUNKS_PER_SHARD = 1024
#: largest chunks-per-shard accepted in metadata (the shard index is allocated from it)
_MAX_INDEX_ENTRIES = 1 << 20
#: largest compression ratio a genuine chunk reaches (zstd on zeros: ~33,000; blosc ~18,000)
_MAX_RATIO = {"none": 1, "zstd": 1 << 16, "blosc": 1 << 16}
#: the per-image index arrays are always zstd: their padded last chunk then costs no disk
_INDEX_ARRAYS = frozenset({"labels", "checksums", "offsets", "shapes", "dtypes"})
_INDEX_LEVEL = 3
_SLACK_BYTES = 1 << 20
_MAX_RECORD_BYTES = 64 << 20
_MAX_ARRAY_JSON_BYTES = 1 << 20
_ALLOWED_CODECS = frozenset({"sharding_indexed", "bytes", "crc32c", "zstd", "blosc"})
_ARRAYS = ("images", "labels", "checksums", "data", "offsets", "shapes", "dtypes")
_RAGGED = ("data", "offsets", "shapes", "dtypes")
#: (dtype, row shape) of the fixed arrays, and their rows per inner chunk
_FIXED: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {
    "labels": (np.dtype("<i8"), (), 32768),
    "checksums": (np.dtype("<u8"), (), 32768),
    "offsets": (np.dtype("<i8"), (), 32768),
    "shapes": (np.dtype("<i8"), (3,), 8192),
    "dtypes": (np.dtype("u1"), (), 262144),
    "data": (np.dtype("u1"), (), _CHUNK_BYTES),
}
_DTYPE_IDS_JSON = {str(i): DTYPE_CODES[dt] for dt, i in DTYPE_IDS.items()}


def _positive_int(value: Any, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise UnsupportedError(f"{name} must be a positive integer or None, got {value!r}")


def _read_regular(path: Path, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the store's file ``path``; None when it does not exist."""
    try:
        return ownfiles.read_own(path, limit)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CorruptStoreError(f"{path} is not a regular file") from None


class _BoundedZstdCodec(ZstdCodec):
    """zarr's zstd codec, refusing a frame that declares more than the chunk it stands for.

    numcodecs allocates a frame's declared content size before decoding it (and grows
    its output without bound for a frame that declares none), so a few bytes of hostile
    chunk would cost the reader any amount of memory. Used by readers only (the
    metadata is identical: ``to_dict`` is the parent's).
    """

    def _check_frame(self, chunk_bytes: Buffer, chunk_spec: Any) -> None:
        data = chunk_bytes.as_numpy_array()
        try:
            itemsize = chunk_spec.dtype.to_native_dtype().itemsize
        except AttributeError:  # older zarr: a numpy dtype
            itemsize = np.dtype(chunk_spec.dtype).itemsize
        expected = math.prod(chunk_spec.shape) * itemsize
        try:
            declared = zstandard.frame_content_size(data[:18].tobytes())
        except zstandard.ZstdError as exc:
            raise CorruptStoreError(f"a zstd chunk has a damaged frame header ({exc})") from None
        if declared < 0 or declared > expected + _SLACK_BYTES:
            what = "does not declare its size" if declared < 0 else f"declares {declared} bytes"
            raise CorruptStoreError(
                f"a zstd chunk {what}, the chunk holds {expected}: the store is damaged or hostile"
            )

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: Any) -> Buffer:
        self._check_frame(chunk_bytes, chunk_spec)
        return super()._decode_sync(chunk_bytes, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: Any) -> Buffer:
        self._check_frame(chunk_bytes, chunk_spec)
        return await super()._decode_single(chunk_bytes, chunk_spec)


register_codec("zstd", _BoundedZstdCodec)
_BOUNDED_CODECS = {"codecs.zstd": f"{_BoundedZstdCodec.__module__}.{_BoundedZstdCodec.__qualname__}"}


_METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})


def _is_metadata_key(key: str) -> bool:
    """Metadata may be absent (zarr probes for it); a chunk we ask for may not."""
    return key.rpartition("/")[2] in _METADATA_NAMES


class _Pins:
    """Descriptors shared by a reader's store and any copy zarr makes of it."""

    def __init__(self, dirfd: int | None):
        self.dirfd = dirfd
        self.keys: set[str] = set()  # keys to keep open once read (possibly rewritten by an appender)
        self.fds: dict[str, int] = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            fds, self.fds = list(self.fds.values()), {}
            dirfd, self.dirfd = self.dirfd, None
        for fd in fds + ([dirfd] if dirfd is not None else []):
            with contextlib.suppress(OSError):
                os.close(fd)


class _FileStore(LocalStore):
    """A ``LocalStore`` that readers pin to the directory they opened.

    Writers use it as a plain ``LocalStore`` (atomic temp-and-rename writes).
    Readers (``pins`` given) open keys relative to a directory descriptor, keep
    the keys in ``pins.keys`` open after first use, read inline on zarr's event
    loop (page-cache reads are faster than a thread hop) and raise
    CorruptStoreError for a missing chunk instead of letting zarr substitute the
    fill value.
    """

    def __init__(self, root: Path | str, *, read_only: bool = False, pins: _Pins | None = None) -> None:
        super().__init__(root, read_only=read_only)
        self._pins = pins

    def with_read_only(self, read_only: bool = False) -> _FileStore:
        return type(self)(self.root, read_only=read_only, pins=self._pins)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _FileStore) and self.root == other.root and self._pins is other._pins

    __hash__ = None  # type: ignore[assignment]

    # -------------------------------------------------------- pinned reads
    def _fd(self, key: str) -> tuple[int, bool]:
        """A descriptor for ``key`` and whether the caller must close it."""
        pins = self._pins
        if key in pins.keys:
            with pins.lock:
                fd = pins.fds.get(key)
                if fd is None:
                    fd = pins.fds[key] = self._open_key(key)
                return fd, False
        return self._open_key(key), True

    def _open_key(self, key: str) -> int:
        dirfd = self._pins.dirfd
        if dirfd is None:
            raise CorruptStoreError(f"{self.root}: the store is closed")
        try:
            return ownfiles.open_own(key, dirfd, f"{self.root}: {key}")[0]
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            if _is_metadata_key(key):
                raise KeyError(key) from None
            raise CorruptStoreError(
                f"{self.root}: {key} is missing (the store is damaged, or was replaced while it was open)"
            ) from None

    def _fstat_size(self, fd: int, key: str) -> int:
        """Size of an open key, refusing anything but a regular file (a FIFO, a device, a directory)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode) and _is_metadata_key(key):
                raise KeyError(key)
            raise CorruptStoreError(f"{self.root}: {key} is not a regular file")
        return st.st_size

    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes | None:
        """Bytes of ``key`` (or a range of them); None for a missing metadata key."""
        try:
            fd, owned = self._fd(key)
        except KeyError:
            return None
        try:
            try:
                size = self._fstat_size(fd, key)
            except KeyError:
                return None
            if byte_range is None:
                start, stop = 0, size
            elif isinstance(byte_range, RangeByteRequest):
                start, stop = byte_range.start, min(byte_range.end, size)
            elif isinstance(byte_range, OffsetByteRequest):
                start, stop = byte_range.offset, size
            elif isinstance(byte_range, SuffixByteRequest):
                start, stop = max(0, size - byte_range.suffix), size
            else:
                raise TypeError(f"unexpected byte range {byte_range!r}")
            if stop <= start:
                return b""
            chunks, pos = [], start
            while pos < stop:
                part = os.pread(fd, stop - pos, pos)
                if not part:
                    break
                chunks.append(part)
                pos += len(part)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            if owned:
                os.close(fd)

    def size(self, key: str) -> int | None:
        """Stored bytes of ``key``; None when it does not exist."""
        if self._pins is None:
            try:
                return os.stat(self.root / key).st_size
            except (FileNotFoundError, NotADirectoryError):
                return None
        try:
            fd, owned = self._fd(key)
        except KeyError:
            return None
        except CorruptStoreError:
            return None
        try:
            return self._fstat_size(fd, key)
        except (KeyError, CorruptStoreError):
            return None
        finally:
            if owned:
                os.close(fd)

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if self._pins is None:
            return await super().get(key, prototype, byte_range)
        prototype = prototype or default_buffer_prototype()
        data = self.read(key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges) -> list[Buffer | None]:
        if self._pins is None:
            return await super().get_partial_values(prototype, key_ranges)
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        if self._pins is None:
            return await super().exists(key)
        return self.size(key) is not None

    async def getsize(self, key: str) -> int:
        size = self.size(key)
        if size is None:
            raise FileNotFoundError(key)
        return size


def _codecs(compression: str, level: int | None) -> list[Any]:
    """Bytes-to-bytes codecs of every inner chunk: the compressor, then a CRC-32C."""
    if compression == "zstd":
        return [ZstdCodec(level=level), Crc32cCodec()]
    if compression == "blosc":
        return [BloscCodec(cname="lz4", clevel=level), Crc32cCodec()]
    return [Crc32cCodec()]


def _grid(row_bytes: int, chunk_rows: int | None = None, shard_rows: int | None = None) -> tuple[int, int]:
    """(rows per inner chunk, rows per shard): ~128 KiB chunks, ~16 MiB shards, shard a multiple of chunk."""
    auto_chunk = max(1, _CHUNK_BYTES // max(1, row_bytes))
    if shard_rows is not None:
        chunk = chunk_rows or next(c for c in range(min(auto_chunk, shard_rows), 0, -1) if shard_rows % c == 0)
        return chunk, shard_rows
    chunk = chunk_rows or auto_chunk
    per_shard = max(1, min(_MAX_CHUNKS_PER_SHARD, _SHARD_BYTES // max(1, chunk * row_bytes)))
    return chunk, chunk * per_shard


def _codec_names(codecs: Any) -> Iterator[str]:
    for codec in codecs if isinstance(codecs, (list, tuple)) else [codecs]:
        if not isinstance(codec, dict):
            yield repr(codec)
            continue
        yield str(codec.get("name"))
        config = codec.get("configuration") or {}
        if isinstance(config, dict):
            for inner in ("codecs", "index_codecs"):
                if inner in config:
                    yield from _codec_names(config[inner])


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
        if shard is not None and shard // (chunk or 1) > _MAX_INDEX_ENTRIES:
            raise UnsupportedError(
                f"a shard holds at most {_MAX_INDEX_ENTRIES} inner chunks: lower shard_images or raise chunk_images"
            )

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
        """Every codec here is lossless on every supported dtype."""

    def _init_handles(self) -> None:
        self._store: _FileStore | None = None
        self._pins: _Pins | None = None
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
            head = _read_regular(path / RECORD_KEY, 1 << 16)
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
        return _MAX_RATIO["zstd" if name in _INDEX_ARRAYS else self.compression]

    # ------------------------------------------------------------ opening
    def _open_store(self, target: Path, reader: bool) -> _FileStore:
        if not reader:
            return _FileStore(target)
        try:
            dirfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (NotADirectoryError, FileNotFoundError) as exc:
            raise CorruptStoreError(f"{target} is not a zarr store directory ({exc.strerror})") from None
        self._pins = _Pins(dirfd)
        return _FileStore(target, read_only=True, pins=self._pins)

    def _read_record(self, store: _FileStore, target: Path) -> dict[str, Any]:
        def load() -> bytes | None:
            if isinstance(store, _FileStore) and store._pins is None:
                return _read_regular(target / RECORD_KEY, _MAX_RECORD_BYTES + 1)
            return store.read(RECORD_KEY, RangeByteRequest(0, _MAX_RECORD_BYTES + 1))

        raw = load()
        if raw is None:
            raise CorruptStoreError(f"{target} has no {RECORD_KEY}; it is not a zarr store")
        if len(raw) > _MAX_RECORD_BYTES:
            raise CorruptStoreError(f"{target / RECORD_KEY} is implausibly large")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{target / RECORD_KEY} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
            raise CorruptStoreError(f"{target / RECORD_KEY} is not zarr v3 group metadata")
        attributes = doc.get("attributes")
        meta = attributes.get("imgbench") if isinstance(attributes, dict) else None
        if not isinstance(meta, dict):
            raise CorruptStoreError(f"{target} is a zarr group without imgbench metadata (attribute 'imgbench')")
        return meta

    def _load(self, store: _FileStore, target: Path, mode: str) -> dict[str, Any]:
        """Read and check the commit record and open the arrays it counts."""
        meta = check_meta(self._read_record(store, target), self.name, target)
        count = meta["count"]
        ucount = meta.get("uniform_count")
        if isinstance(ucount, bool) or not isinstance(ucount, int) or not 0 <= ucount <= count:
            raise CorruptStoreError(f"{target}: commit record has an invalid uniform_count ({ucount!r})")
        image = meta.get("image")
        uniform = None
        if image is not None:
            try:
                shape = tuple(int(d) for d in image["shape"])
                dtype = dtype_from_code(image["dtype"])
            except (TypeError, KeyError, ValueError) as exc:
                raise CorruptStoreError(f"{target}: commit record has a malformed image entry ({exc})") from None
            if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] > 4):
                raise CorruptStoreError(f"{target}: commit record lists an impossible image shape {shape}")
            uniform = (shape, dtype)
        elif ucount:
            raise CorruptStoreError(f"{target}: commit record counts uniform images but gives no shape")
        self._store, self._target = store, target
        self._uniform, self._ucount, self._rcount = uniform, ucount, count - ucount
        labelled = meta.get("labels") is True and count > 0
        checksummed = meta.get("checksum") == checksum.ALGORITHM and count > 0
        wanted = ["images"] if ucount else []
        wanted += list(_RAGGED) if self._rcount else []
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
        if size > _MAX_ARRAY_JSON_BYTES:
            raise CorruptStoreError(f"{self._target}: metadata of array {name!r} is implausibly large")
        def open_array() -> Any:
            # Readers decode zstd chunks with the bounded codec (the class is chosen when the metadata is parsed).
            with zarr.config.set(_BOUNDED_CODECS) if mode == "r" else contextlib.nullcontext():
                return zarr.open_array(store, path=name, mode="r" if mode == "r" else "r+", zarr_format=3)

        arr = self._reading(f"the metadata of array {name!r}", open_array)
        meta = arr.metadata.to_dict()
        names = set(_codec_names(meta.get("codecs")))
        if not names <= _ALLOWED_CODECS or "sharding_indexed" not in names or meta.get("storage_transformers"):
            raise CorruptStoreError(
                f"{self._target}: array {name!r} uses codecs {sorted(names)}; imgbench writes only "
                f"{sorted(_ALLOWED_CODECS)} and runs nothing else"
            )
        if name == "images":
            shape, dtype = self._uniform
            expected_dtype, rest = dtype, shape
        else:
            expected_dtype, rest, _ = _FIXED[name]
        if arr.ndim != 1 + len(rest) or tuple(arr.shape[1:]) != tuple(rest) or arr.dtype != expected_dtype:
            raise CorruptStoreError(
                f"{self._target}: array {name!r} is {arr.shape} {arr.dtype}, expected (n, {rest}) {expected_dtype}"
            )
        try:
            shard = tuple(arr.shards or ())
            chunk = tuple(arr.chunks)
        except Exception as exc:
            raise CorruptStoreError(f"{self._target}: array {name!r} has a malformed chunk grid ({exc})") from None
        if (
            len(shard) != arr.ndim
            or shard[1:] != tuple(rest)
            or chunk[1:] != tuple(rest)
            or min(chunk[0], shard[0]) < 1
            or shard[0] % chunk[0]
            or shard[0] // chunk[0] > _MAX_INDEX_ENTRIES
        ):
            raise CorruptStoreError(f"{self._target}: array {name!r} has an unexpected chunk grid {chunk} / {shard}")
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
            for prefix in ("",) + _ARRAYS:
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
                compressors=_codecs(
                    *(("zstd", _INDEX_LEVEL) if name in _INDEX_ARRAYS else (self.compression, self.level))
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
            chunk, shard = _grid(
                math.prod(shape) * dtype.itemsize,
                None if chunk_opt is None else int(chunk_opt),
                None if shard_opt is None else int(shard_opt),
            )
            return self._new_array(name, dtype, shape, chunk, shard)
        dtype, rest, chunk = _FIXED[name]
        row_bytes = dtype.itemsize * math.prod(rest)
        per_shard = max(1, min(_MAX_CHUNKS_PER_SHARD, _SHARD_BYTES // (chunk * row_bytes)))
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
        record["dtype_ids"] = _DTYPE_IDS_JSON
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {"imgbench": record}}
        data = json.dumps(doc, indent=1).encode()
        store = self._store
        self._writing_zarr("the commit record", lambda: _zsync(
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
        budget = _SLACK_BYTES
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
        """Images at uniform positions ``idx``: sorted, fetched in one call, put back in order."""
        uniq, inverse = np.unique(idx, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo == len(uniq):
            block = self._rows("images", lo, hi)
        else:
            self._check_rows("images", uniq)
            arr = self._arrays["images"]
            block = self._reading("images", lambda: arr.get_orthogonal_selection((uniq,)))
        if len(uniq) == len(idx) and (idx[1:] > idx[:-1]).all():
            return block
        return np.take(block, inverse.reshape(-1), axis=0)

    def _ragged_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Offsets, shapes and dtype ids of the ragged images, loaded and checked once per reader."""
        if self._ragged is None:
            r = self._rcount
            offsets = self._rows("offsets", 0, r + 1).astype(np.int64)
            shapes = self._rows("shapes", 0, r).astype(np.int64)
            ids = self._rows("dtypes", 0, r)
            if offsets[0] != 0 or (np.diff(offsets) < 0).any() or offsets[-1] > self._arrays["data"].shape[0]:
                raise CorruptStoreError(f"{self.path}: ragged index (offsets) is inconsistent")
            known = np.zeros(256, np.int64)
            for dtype, ident in DTYPE_IDS.items():
                known[ident] = dtype.itemsize
            itemsize = known[ids]
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
            while end < len(uniq) and starts[end] - stops[end - 1] <= _CHUNK_BYTES:
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


class _RemoteZarr(FsspecStore):
    """zarr's ``FsspecStore`` for readers of a store at a URL.

    Adds what the reader asks of ``_FileStore`` (``size``, ``read``), makes a
    missing chunk a CorruptStoreError (zarr would return the fill value) and a
    network or credential failure the one-line error ``error(key, exc)`` gives,
    instead of zarr's traceback or a "damaged store".
    """

    def __init__(
        self, fs: Any, read_only: bool = True, path: str = "/",
        allowed_exceptions: tuple = (FileNotFoundError, IsADirectoryError, NotADirectoryError),
        *, error: Callable[[str, BaseException], BaseException] | None = None,
    ) -> None:
        super().__init__(fs, read_only=True, path=path, allowed_exceptions=allowed_exceptions)
        self._error = error or (lambda key, exc: exc)

    def with_read_only(self, read_only: bool = False) -> _RemoteZarr:
        return type(self)(self.fs, path=self.path, allowed_exceptions=self.allowed_exceptions, error=self._error)

    def _fail(self, key: str, exc: BaseException) -> BaseException:
        return exc if isinstance(exc, ImgbenchError) else self._error(key, exc)

    def size(self, key: str) -> int | None:
        """Stored bytes of ``key``; None when it does not exist."""
        async def info() -> int | None:
            try:
                return int((await self.fs._info(f"{self.path.rstrip('/')}/{key}"))["size"])
            except FileNotFoundError:
                return None
            except Exception as exc:
                raise self._fail(key, exc) from None

        return _zsync(info())

    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes | None:
        """Bytes of ``key`` (or a range of them); None for a missing metadata key."""
        buf = _zsync(self.get(key, default_buffer_prototype(), byte_range))
        return None if buf is None else buf.to_bytes()

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        try:
            buf = await super().get(key, prototype or default_buffer_prototype(), byte_range)
        except Exception as exc:
            err = self._fail(key, exc)
            if err is exc:
                raise
            raise err from None
        if buf is None and not _is_metadata_key(key):
            raise self._fail(key, FileNotFoundError(key))
        return buf

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges) -> list[Buffer | None]:
        import asyncio

        return list(await asyncio.gather(*(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)))


class RemoteZarrStore(RemoteStore, ZarrStore):
    """A zarr store read from a URL (``s3://bucket/x.zarr``) through zarr's ``FsspecStore``.

    Everything but the storage is the local reader's: the commit record and
    every array's metadata are checked the same way, zstd chunks are decoded by
    the bounded codec, declared sizes are checked against the stored shards
    (one HEAD per shard, cached) before anything is allocated. Not pinned like
    a local reader (objects have no descriptors to hold): if the store is
    replaced on the server while a reader has it open, the reader may be served
    the new objects (``verify=True`` then fails the checksums); reopen it.
    """

    def _open_store(self, target: Any, reader: bool) -> _RemoteZarr:
        fs, root = self._remote_fs(asynchronous=True)
        return _RemoteZarr(fs, path=root, error=self._remote_error)
