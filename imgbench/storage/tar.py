"""Tar backend: WebDataset-compatible tar shards plus a binary index for random access.

Layout (a directory; stream the shards with ``webdataset``, list them with ``tar tf``):

- ``shard-000000.tar``, ``shard-000001.tar``, ...: plain POSIX (ustar) tar files,
  each at most ``shard_bytes`` (default 256 MiB) unless one sample alone is
  bigger. Per image, in index order: ``<key>.png`` (compression ``png``) or
  ``<key>.npy`` (compression ``none``: a NumPy ``.npy`` file, no pickle), then,
  when the store is labelled, ``<key>.cls`` holding the label as ASCII decimal
  (the webdataset convention). ``key`` is the zero-padded image index
  (``00000042``). Only regular files, no directories, mode 0644, mtime 0.
- ``imgbench-tar.index``: the index, ``count`` rows of 9 little-endian int64:
  shard number, byte offset of the image member's data in that shard, its size,
  label (0 when unlabelled), height, width, channels (0 for 2-D), dtype id (1
  uint8, 2 uint16, 3 int16, 4 float32), checksum: the xxh3-64 digest of the
  image's raw little-endian C-order pixels seeded with the image's label (0 when
  unlabelled; ``xxhash.xxh3_64_intdigest(pixels, seed=label & (2**64 - 1))``, so
  the label column is checked too), its 64 bits stored as an int64 (read
  the column with ``.view("<u8")``; 0 in a store whose commit record names no
  ``checksum``). ``np.fromfile(p, "<i8").reshape(-1, 9)[:count]``.
- ``imgbench-tar.json``: the commit record, written last and atomically: the
  common imgbench header (format, version, backend, compression, level, count,
  labels flag, attrs, ``"checksum": "xxh3_64"`` when the index holds digests)
  plus ``shards``: ``[{"name", "size", "samples"}, ...]`` and ``index``:
  ``{"file", "dtype": "<i8", "columns": [...]}`` naming the nine columns.
  Its ``count`` and shard list are the truth; anything beyond them is a leftover
  of an interrupted append.

Crash safety: committed shards are never written again (an append starts new
shard files; tar's end-of-archive blocks make appending in place unsafe), index
rows below the committed count are never written again (new rows go after
them; an image's digest is in its own row, so it is committed with it), and the
commit record is replaced by rename after the new shards and rows
are synced. So a killed appender leaves the old store, and a reader sees the
old or the new count with every image whole. Readers open every file relative
to the directory they opened, without following symlinks, and bounds-check the
index against each shard's committed and actual size before any read: a crafted
index cannot make them read outside the store or allocate without bound.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, codecs, ownfiles, parallel
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.images import DTYPE_IDS, SUPPORTED_DTYPES
from imgbench.core.store import Store, check_meta, stack_if_uniform
from imgbench.core.transport import RemoteStore
from imgbench.storage.disk import _npy_decode

COMMIT = "imgbench-tar.json"
INDEX = "imgbench-tar.index"
INDEX_COLUMNS = ("shard", "offset", "size", "label", "height", "width", "channels", "dtype", "checksum")
SHARD, OFFSET, SIZE, LABEL, HEIGHT, WIDTH, CHANNELS, DTYPE, CHECKSUM = range(9)
_NCOL = len(INDEX_COLUMNS)
_ROW = 8 * _NCOL
_KIND = slice(HEIGHT, DTYPE + 1)  # the columns that give an image's shape and dtype
_BLOCK = 512
_EOA = bytes(2 * _BLOCK)  # tar end-of-archive: two zero blocks
_SHARD_RE = re.compile(r"shard-([0-9]{6,9})\.tar")
_MAX_COMMIT_BYTES = 256 << 20
_MAX_MEMBER = 8**11 - 1  # ustar size field: 11 octal digits
_ENCODE_BYTES = 64 << 20  # raw image bytes encoded per slice of a write
_WRITE_BYTES = 8 << 20  # tar bytes buffered before one pwrite
_GAP = 64 << 10  # bulk reads: neighbours closer than this share one pread
_RUN = {"png": 1 << 20, "none": 4 << 20}  # bulk reads: bytes per pread (and per decode task)
_MAX_CACHED_FDS = 256
_DEFLATE_MAX_RATIO = 1040  # as codecs.PngCodec: a PNG cannot claim more decoded bytes than this
_ITEMSIZE = np.zeros(len(SUPPORTED_DTYPES) + 1, np.float64)
for _dt, _id in DTYPE_IDS.items():
    _ITEMSIZE[_id] = _dt.itemsize
_DTYPE_BY_ID = {i: dt for dt, i in DTYPE_IDS.items()}
_OPEN_READ = ownfiles.OPEN_READ


def shard_name(number: int) -> str:
    """File name of shard ``number``; lexical order is shard order."""
    return f"shard-{number:06d}.tar"


def _ustar_template() -> tuple[bytes, int]:
    info = tarfile.TarInfo("")
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
    header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    header[124:136] = b"\0" * 12
    header[148:156] = b" " * 8
    return bytes(header), sum(header)


_TEMPLATE, _TEMPLATE_SUM = _ustar_template()


def member_header(name: bytes, size: int) -> bytes:
    """A ustar header for a regular file ``name`` of ``size`` bytes (what tarfile writes, minus its cost)."""
    if size > _MAX_MEMBER:
        raise UnsupportedError(f"an encoded image of {size} bytes is too large for a tar member (limit 8 GiB)")
    size_field = b"%011o\0" % size
    header = bytearray(_TEMPLATE)
    header[: len(name)] = name
    header[124:136] = size_field
    header[148:156] = b"%06o\0 " % (_TEMPLATE_SUM + sum(name) + sum(size_field))
    return bytes(header)


def _pad(n: int) -> int:
    return -n % _BLOCK


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pread_exact(fd: int, size: int, offset: int, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts, got = [data], len(data)
    while got < size:
        chunk = os.pread(fd, size - got, offset + got)
        if not chunk:
            raise CorruptStoreError(f"{what} is truncated: {size} bytes at offset {offset} were expected, {got} found")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class TarStore(Store):
    name = "tar"
    compressions = ("png", "none")
    stores_checksums = True
    option_defaults = {
        "shard_bytes": 256 << 20,  # a shard rolls over when the next sample would make it bigger
        "threads": None,  # encode/decode threads (None = all cores)
        "sync": True,  # sync shards, index and commit record before an append or a new store becomes visible
    }

    def _check_options(self) -> None:
        threads = self.options["threads"]
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UnsupportedError(f"threads must be a positive integer, got {threads!r}")
        cap = self.options["shard_bytes"]
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise UnsupportedError(f"shard_bytes must be a positive integer (bytes per shard), got {cap!r}")

    def _init_handles(self) -> None:
        # reader
        self._dirfd: int | None = None  # every file is opened relative to the directory opened first
        self._table = np.zeros((0, _NCOL), np.int64)
        self._shards: list[dict[str, Any]] = []
        self._fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._uniform: tuple[tuple[int, ...], np.dtype] | None = None
        self._npy_headers: dict[tuple, bytes] = {}
        # writer
        self._dir: Path | None = None
        self._index_fd: int | None = None
        self._cur: dict[str, Any] | None = None  # the shard being written: name, fd, pos, samples
        self._buf: list[bytes] = []
        self._buf_start = 0
        self._buf_len = 0
        self._rows: list[np.ndarray] = []  # index rows not yet in the index file
        self._rows_written = 0  # rows in the index file that are final
        self._committed_shards = 0  # 'a': shards named by the published commit record
        self._created: list[str] = []  # shard files created since the last commit
        self._unsynced: list[str] = []

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / COMMIT).is_file()

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is not None and COMMIT in probe.names

    @classmethod
    def remote_reader(cls) -> type[Store]:
        return RemoteTarStore

    # ------------------------------------------------------------ opening
    def _open_in_dir(self, name: str, flags: int = _OPEN_READ) -> int:
        return os.open(name, flags, 0o666, dir_fd=self._dirfd)  # created files: 0644 under the usual umask

    def _open_own(self, name: str, missing: str) -> tuple[int, int]:
        """(fd, size) of the store's file ``name``; CorruptStoreError ``missing`` when it is absent."""
        try:
            return ownfiles.open_own(name, self._dirfd, f"{self.path}/{name}")
        except (FileNotFoundError, IsADirectoryError):
            raise CorruptStoreError(missing) from None

    def _read_small(self, name: str, limit: int) -> bytes:
        fd, size = self._open_own(name, f"{self.path} has no {name}; it is not a tar store (or it was replaced)")
        try:
            if size > limit:
                raise CorruptStoreError(f"{self.path}/{name} is implausibly large ({size} bytes)")
            return _pread_exact(fd, size, 0, f"{self.path}/{name}")
        finally:
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        """Read and check the commit record and the index; nothing is trusted before it is checked."""
        try:
            meta = json.loads(self._read_small(COMMIT, _MAX_COMMIT_BYTES))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{self.path}/{COMMIT} is not valid JSON ({exc})") from None
        meta = check_meta(meta, self.name, self.path)
        count = meta["count"]
        self._shards = self._check_shards(meta.get("shards"))
        index = meta.get("index")
        columns = index.get("columns") if isinstance(index, dict) else None
        if columns != list(INDEX_COLUMNS) or index.get("dtype") != "<i8":
            raise CorruptStoreError(
                f"{self.path}/{COMMIT} describes index columns {columns!r}; this imgbench reads "
                f"{list(INDEX_COLUMNS)} (<i8). Damaged, or written by a development version: rewrite it"
            )
        raw = self._index_bytes(count * _ROW)
        if len(raw) < count * _ROW:
            raise CorruptStoreError(
                f"{self.path}/{INDEX} is truncated: {len(raw)} bytes for {count} images ({_ROW} bytes each)"
            )
        rows = np.frombuffer(raw, "<i8").reshape(count, _NCOL).astype(np.int64)
        self._check_index(rows, meta.get("compression"))
        self._table = rows
        self._uniform = None
        if count and (rows[:, _KIND] == rows[0, _KIND]).all():
            self._uniform = self._kind(0)
        return meta

    def _index_bytes(self, nbytes: int) -> bytes:
        """The first ``nbytes`` of the index (fewer when it is shorter: the caller reports it truncated)."""
        fd, size = self._open_own(INDEX, f"{self.path} has no {INDEX} (damaged, or the store was replaced)")
        try:
            n = min(nbytes, size)
            return _pread_exact(fd, n, 0, f"{self.path}/{INDEX}") if n else b""
        finally:
            os.close(fd)

    def _check_shards(self, shards: Any) -> list[dict[str, Any]]:
        if not isinstance(shards, list):
            raise CorruptStoreError(f"{self.path}/{COMMIT} has no shard list")
        out = []
        for k, entry in enumerate(shards):
            if not isinstance(entry, dict):
                raise CorruptStoreError(f"{self.path}/{COMMIT}: shard entry {k} is not a mapping")
            name, size = entry.get("name"), entry.get("size")
            # Names are matched exactly: no directories, no '..', no absolute paths.
            if not isinstance(name, str) or not _SHARD_RE.fullmatch(name):
                raise CorruptStoreError(f"{self.path}/{COMMIT}: shard name {name!r} is not one imgbench writes")
            if isinstance(size, bool) or not isinstance(size, int) or not 2 * _BLOCK <= size < 2**62 or size % _BLOCK:
                raise CorruptStoreError(f"{self.path}/{COMMIT}: shard {name} has an impossible size {size!r}")
            out.append({"name": name, "size": size, "samples": entry.get("samples")})
        return out

    def _check_index(self, rows: np.ndarray, compression: Any) -> None:
        """Vectorised bounds checks: every image lies inside its shard's committed data, with a plausible shape."""
        if not len(rows):
            return
        sizes = np.array([s["size"] for s in self._shards] or [0], np.int64)
        shard, off, size = rows[:, SHARD], rows[:, OFFSET], rows[:, SIZE]
        bad = (shard < 0) | (shard >= len(self._shards))
        limit = sizes[np.where(bad, 0, shard)] - len(_EOA)
        h, w, c, dt = rows[:, HEIGHT], rows[:, WIDTH], rows[:, CHANNELS], rows[:, DTYPE]
        bad |= (off < _BLOCK) | (off % _BLOCK != 0) | (size < 1) | (size > limit - off)
        bad |= (h < 1) | (w < 1) | (h > 2**31) | (w > 2**31) | (c < 0) | (c > 4) | (dt < 1) | (dt >= len(_ITEMSIZE))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CorruptStoreError(
                f"{self.path}/{INDEX} is inconsistent at image {i}: {dict(zip(INDEX_COLUMNS, rows[i].tolist()))} "
                "does not fit the shards in the commit record"
            )
        nbytes = h.astype(np.float64) * w * np.maximum(c, 1) * _ITEMSIZE[np.clip(dt, 0, len(_ITEMSIZE) - 1)]
        if compression == "png":
            bad = (nbytes > _DEFLATE_MAX_RATIO * size.astype(np.float64) + 4096) | (dt > DTYPE_IDS[np.dtype("uint16")])
        else:
            bad = nbytes > size
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise CorruptStoreError(
                f"{self.path}/{INDEX}: image {i} claims {int(nbytes[i])} decoded bytes from a {int(size[i])}-byte "
                f"{compression} member: damaged, or a decompression bomb"
            )

    def _open_reader(self) -> dict[str, Any]:
        self._dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self._load()
        except BaseException:
            self._close_reader()
            raise

    def _open_appender(self, target: Path) -> dict[str, Any]:
        self._dir = target
        self._dirfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            meta = self._load()
            self._rows_written = meta["count"]
            self._committed_shards = len(self._shards)
            self._remove_leftovers()
            self._index_fd = self._open_in_dir(INDEX, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            self._table = np.zeros((0, _NCOL), np.int64)  # the appender needs no committed rows
            return meta
        except BaseException:
            self._close_fds()
            raise

    def _remove_leftovers(self) -> None:
        """Delete shards and commit-record temporaries an interrupted append left (we hold the writer lock)."""
        for entry in os.listdir(self._dirfd):
            m = _SHARD_RE.fullmatch(entry)
            stale = m is not None and int(m.group(1)) >= self._committed_shards and entry == shard_name(int(m.group(1)))
            stale |= entry.startswith(f".{COMMIT}.") and entry.endswith(".part")
            if stale:
                try:
                    os.unlink(entry, dir_fd=self._dirfd)
                except FileNotFoundError:
                    pass

    def _create(self, target: Path) -> None:
        target.mkdir()
        self._dir = target
        self._dirfd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._index_fd = self._open_in_dir(INDEX, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)

    # ------------------------------------------------------------ writing
    def _npy_encode(self, image: np.ndarray) -> bytes:
        """The .npy file ``np.save`` would write, with its header built once per shape and dtype."""
        le = image.dtype.newbyteorder("<")
        return self._npy_header(image.shape, image.dtype) + np.ascontiguousarray(image, dtype=le).tobytes()

    def _write(self, images, labels, start, checksums=None) -> None:
        n = len(images)
        per = max(1, _ENCODE_BYTES // max(1, images[0].nbytes))
        try:
            for s in range(0, n, per):
                part = images[s : s + per]
                if self.compression == "none":  # a memory copy: a thread hop costs more
                    blobs = [self._npy_encode(im) for im in part]
                else:
                    codec, level = codecs.CODECS[self.compression], self.level
                    blobs = parallel.map_items(lambda im: codec.encode(im, level), part, self.options["threads"], 16)
                self._add_samples(
                    part,
                    blobs,
                    None if labels is None else labels[s : s + per],
                    None if checksums is None else checksums[s : s + per],
                    start + s,
                )
            self._drain()
        except OSError as exc:
            raise ImgbenchError(f"writing tar shards to {self._dir} failed: {exc}") from exc

    def _add_samples(
        self, images, blobs: list[bytes], labels: np.ndarray | None, checksums: np.ndarray | None, start: int
    ) -> None:
        cap = self.options["shard_bytes"]
        ext = codecs.CODECS[self.compression].suffix.encode()
        label_list = None if labels is None else labels.tolist()
        rows = np.zeros((len(blobs), _NCOL), np.int64)
        for j, blob in enumerate(blobs):
            key = b"%08d" % (start + j)
            size = len(blob)
            cls = None if label_list is None else b"%d" % label_list[j]
            sample = _BLOCK + size + _pad(size) + (0 if cls is None else 2 * _BLOCK)
            if self._cur is None or (self._cur["pos"] > 0 and self._cur["pos"] + sample + len(_EOA) > cap):
                self._roll()
            cur = self._cur
            pieces = [member_header(key + ext, size), blob, bytes(_pad(size))]
            if cls is not None:
                pieces += [member_header(key + b".cls", len(cls)), cls, bytes(_pad(len(cls)))]
            self._buf += pieces
            self._buf_len += sample
            shape = images[j].shape
            rows[j, :CHECKSUM] = (
                len(self._shards), cur["pos"] + _BLOCK, size, 0 if cls is None else label_list[j],
                shape[0], shape[1], shape[2] if len(shape) == 3 else 0, DTYPE_IDS[images[j].dtype],
            )
            cur["pos"] += sample
            cur["samples"] += 1
            if self._buf_len >= _WRITE_BYTES:
                self._drain()
        if checksums is not None:
            rows[:, CHECKSUM] = np.asarray(checksums, np.uint64).view(np.int64)
        self._rows.append(rows)

    def _drain(self) -> None:
        if self._buf:
            data, self._buf = b"".join(self._buf), []
            _pwrite_all(self._cur["fd"], data, self._buf_start)
            self._buf_start += len(data)
            self._buf_len = 0

    def _seal(self) -> int:
        """Write the end-of-archive blocks after the current shard's samples; return its size."""
        self._drain()
        cur = self._cur
        size = cur["pos"] + len(_EOA)
        _pwrite_all(cur["fd"], _EOA, cur["pos"])
        os.ftruncate(cur["fd"], size)
        return size

    def _finish_shard(self) -> None:
        """Seal and close the current shard; it is never written again."""
        cur = self._cur
        size = self._seal()
        os.close(cur["fd"])
        self._cur = None
        self._shards.append({"name": cur["name"], "size": size, "samples": cur["samples"]})
        self._unsynced.append(cur["name"])

    def _roll(self) -> None:
        if self._cur is not None:
            self._finish_shard()
        name = shard_name(len(self._shards))
        try:  # only ever an uncommitted leftover: committed shard numbers are below len(self._shards)
            os.unlink(name, dir_fd=self._dirfd)
        except FileNotFoundError:
            pass
        fd = self._open_in_dir(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._created.append(name)
        self._cur = {"name": name, "fd": fd, "pos": 0, "samples": 0}
        self._buf, self._buf_start, self._buf_len = [], 0, 0

    def _fsync_name(self, name: str) -> None:
        fd = self._open_in_dir(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_data(self) -> None:
        for name in self._unsynced:
            self._fsync_name(name)
        self._unsynced = []
        if self._cur is not None:
            os.fsync(self._cur["fd"])
        os.fsync(self._index_fd)

    def _flush(self, meta) -> None:
        append = self.mode == "a"
        sync = self.options["sync"]
        try:
            shards = list(self._shards)
            if self._cur is not None:
                size = self._seal()
                shards.append({"name": self._cur["name"], "size": size, "samples": self._cur["samples"]})
            if self._rows:
                rows = np.concatenate(self._rows).astype("<i8")
                _pwrite_all(self._index_fd, rows.tobytes(), self._rows_written * _ROW)
                self._rows_written += len(rows)
                self._rows = []
            if self._rows_written != meta["count"]:
                raise ImgbenchError(f"internal error: {self._rows_written} index rows for {meta['count']} images")
            os.ftruncate(self._index_fd, self._rows_written * _ROW)  # drops rows a killed appender left
            if append and sync:
                self._sync_data()
            meta = dict(meta, shards=shards, index={"file": INDEX, "dtype": "<i8", "columns": list(INDEX_COLUMNS)})
            # 'w'/'x': the whole directory is published on close, synced in _close_writer.
            atomic.write_file(self._dir / COMMIT, json.dumps(meta).encode(), sync=append and sync)
        except OSError as exc:
            raise ImgbenchError(f"committing {self._dir / COMMIT} failed: {exc}") from exc
        if append:
            # Committed: the current shard is final and what this writer created is now the store's.
            if self._cur is not None:
                os.close(self._cur["fd"])
                self._shards.append(shards[-1])
                self._cur = None
            self._committed_shards = len(self._shards)
            self._created = []
            self._unsynced = []

    def _close_writer(self, commit: bool) -> None:
        try:
            if commit and self.mode != "a" and self.options["sync"] and self._dirfd is not None:
                self._sync_data()
                self._fsync_name(COMMIT)
                os.fsync(self._dirfd)
            if not commit and self.mode == "a" and self._dirfd is not None:
                # Nothing uncommitted is referenced by any commit record: drop it.
                for name in self._created:
                    try:
                        os.unlink(name, dir_fd=self._dirfd)
                    except FileNotFoundError:
                        pass
                self._created = []
                if self._index_fd is not None:
                    os.ftruncate(self._index_fd, self._rows_written * _ROW)
        finally:
            self._close_fds()
            self._rows, self._buf = [], []

    def _close_fds(self) -> None:
        if self._cur is not None:
            os.close(self._cur["fd"])
            self._cur = None
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None
        self._close_reader()

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        with self._fd_lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None

    def _reader_handles(self) -> Any:
        # Inherited descriptors: left open (the parent still uses them), never used here.
        handles = (self._dirfd, self._fds)
        self._dirfd, self._fds, self._fd_lock = None, {}, threading.Lock()
        return handles

    def _open_shard(self, k: int) -> int:
        name, size = self._shards[k]["name"], self._shards[k]["size"]
        fd, found = self._open_own(name, f"shard {name} of {self.path} is missing (damaged, or the store was replaced)")
        if found != size:
            os.close(fd)
            raise self._shard_mismatch(k, found)
        return fd

    def _shard_mismatch(self, k: int, found: int | str) -> CorruptStoreError:
        """Shard ``k`` is not what the commit record says (``found``: its size, or what it is instead)."""
        name, size = self._shards[k]["name"], self._shards[k]["size"]
        what = found if isinstance(found, str) else f"has {found} bytes"
        return CorruptStoreError(f"shard {name} of {self.path} {what}; the commit record says {size}: truncated or modified")

    def _shard_fd(self, k: int) -> tuple[int, bool]:
        """An open descriptor of shard ``k`` and whether the caller must close it."""
        fd = self._fds.get(k)
        if fd is not None:
            return fd, False
        fd = self._open_shard(k)
        with self._fd_lock:
            if k in self._fds:  # another thread won the race
                os.close(fd)
                return self._fds[k], False
            if len(self._fds) < _MAX_CACHED_FDS:
                self._fds[k] = fd
                return fd, False
        return fd, True

    def _read_range(self, k: int, size: int, offset: int) -> bytes:
        fd, close = self._shard_fd(k)
        try:
            return _pread_exact(fd, size, offset, f"shard {self._shards[k]['name']} of {self.path}")
        finally:
            if close:
                os.close(fd)

    def _kind(self, index: int) -> tuple[tuple[int, ...], np.dtype]:
        h, w, c, dt = self._table[index, _KIND].tolist()
        return ((h, w, c) if c else (h, w)), _DTYPE_BY_ID[dt]

    def _npy_header(self, shape: tuple[int, ...], dtype: np.dtype) -> bytes:
        """The exact .npy header this backend writes for ``shape``/``dtype`` (the fast path checks it bytewise)."""
        key = (shape, dtype)
        header = self._npy_headers.get(key)
        if header is None:
            # A broadcast view: the header is built from shape and dtype without allocating the image.
            probe = np.broadcast_to(np.zeros((), np.dtype(dtype).newbyteorder("<")), shape)
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(probe))
            header = self._npy_headers[key] = buf.getvalue()
        return header

    def _decode(self, index: int, data: bytes | memoryview) -> np.ndarray:
        shape, dtype = self._kind(index)
        try:
            if self.compression == "none":
                header = self._npy_header(shape, dtype)
                if len(data) > len(header) and data[: len(header)] == header:
                    # The header we write, byte for byte: skip parsing it (RawCodec checks the length).
                    return codecs.CODECS["none"].decode(memoryview(data)[len(header) :], dtype, shape)
                return _npy_decode(bytes(data), dtype, shape)
            return codecs.CODECS[self.compression].decode(data, dtype, shape)
        except CorruptStoreError as exc:
            name = self._shards[int(self._table[index, SHARD])]["name"]
            raise CorruptStoreError(f"image {index} (in {name}): {exc}") from None

    def _get(self, index: int) -> np.ndarray:
        k, offset, size = self._table[index, :3].tolist()
        if self.verify:
            return self._decode(index, self._read_checked_sample(index))
        return self._decode(index, self._read_range(k, size, offset))

    def _read_checked_sample(self, index: int) -> bytes:
        """verify=True: image ``index``'s bytes, after checking that the tar headers of its sample
        (``<key>.<ext>`` and ``<key>.cls``) are exactly the ones this backend writes.

        Readers use the index, never member names; but the shards are also meant for tar tools
        and webdataset, which do: a member renamed ``../x`` would make an extracting tool write
        outside its folder, so a verified read calls it damage. One pread per sample."""
        k, offset, size, label = self._table[index, :4].tolist()
        name = b"%08d" % index
        cls = b"%d" % label if self._labelled else None
        span = _BLOCK + size + _pad(size) + (0 if cls is None else 2 * _BLOCK)
        if offset < _BLOCK:
            raise CorruptStoreError(f"{self.path}: image {index} has no room for its tar header (offset {offset})")
        raw = self._read_range(k, span, offset - _BLOCK)
        ext = codecs.CODECS[self.compression].suffix.encode()
        tail = _BLOCK + size + _pad(size)
        if raw[:_BLOCK] != member_header(name + ext, size) or (
            cls is not None
            and (raw[tail : tail + _BLOCK] != member_header(name + b".cls", len(cls))
                 or raw[tail + _BLOCK : tail + _BLOCK + len(cls)] != cls)
        ):
            raise CorruptStoreError(
                f"{self.path}: the tar members of image {index} are not {(name + ext).decode()}"
                f"{'' if cls is None else ' and ' + (name + b'.cls').decode()} as written (damaged, or renamed: "
                "a tar tool extracting this shard could write outside its folder)"
            )
        return raw[_BLOCK : _BLOCK + size]

    def _runs(self, idx: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Sort the requested images by (shard, offset) and cut them into runs, each one pread."""
        rows = self._table[idx]
        order = np.lexsort((rows[:, OFFSET], rows[:, SHARD]))
        shard, off, size = rows[order, SHARD], rows[order, OFFSET], rows[order, SIZE]
        span = _RUN.get(self.compression, 1 << 20)
        cut = np.ones(len(order), bool)
        cut[1:] = (
            (shard[1:] != shard[:-1])
            | (off[1:] - (off[:-1] + size[:-1]) > _GAP)
            | (off[1:] // span != off[:-1] // span)
        )
        starts = np.flatnonzero(cut).tolist()
        return order, list(zip(starts, starts[1:] + [len(order)]))

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        idx = np.asarray(indices, np.int64)
        n = len(idx)
        kinds = self._table[idx, _KIND]
        uniform = bool((kinds == kinds[0]).all())
        order, runs = self._runs(idx)
        order_l, idx_l = order.tolist(), idx.tolist()
        shard_l = self._table[idx, SHARD].tolist()
        off_l = self._table[idx, OFFSET].tolist()
        size_l = self._table[idx, SIZE].tolist()
        out: np.ndarray | None = None
        results: list[Any] = []
        fast_raw = False
        if uniform:
            shape, dtype = self._kind(idx_l[0])
            # Allocated only from index entries already checked against real shard bytes.
            out = np.empty((n, *shape), dtype)
            if self.compression == "none" and sys.byteorder == "little":
                header = self._npy_header(shape, dtype)
                hlen = len(header)
                flat = out.reshape(n, -1).view(np.uint8)
                nbytes = flat.shape[1]
                fast_raw = True
        else:
            results = [None] * n

        ranges = []  # (shard, start, end) of each run: one read each
        for a, b in runs:
            members = order_l[a:b]
            # sorted: the first has the lowest offset
            ranges.append((shard_l[members[0]], off_l[members[0]], max(off_l[p] + size_l[p] for p in members)))

        def run(r: int, buf: bytes) -> None:
            a, b = runs[r]
            members = order_l[a:b]
            start = ranges[r][1]
            view = memoryview(buf)
            for p in members:
                o, z = off_l[p] - start, size_l[p]
                if fast_raw and z == hlen + nbytes and view[o : o + hlen] == header:
                    flat[p] = np.frombuffer(buf, np.uint8, nbytes, o + hlen)
                    continue
                image = self._decode(idx_l[p], view[o : o + z])
                if out is not None:
                    out[p] = image
                else:
                    results[p] = image

        self._read_runs(ranges, run)
        return out if out is not None else stack_if_uniform(results)

    def _read_runs(self, ranges: list[tuple[int, int, int]], use: Callable[[int, bytes], None]) -> None:
        """``use(r, bytes of ranges[r])`` for every (shard, start, end), reads and decoding spread over threads."""
        def one(r: int) -> None:
            k, start, end = ranges[r]
            use(r, self._read_range(k, end - start, start))

        parallel.map_chunks(lambda s, e: [one(r) for r in range(s, e)], len(ranges), self.options["threads"], chunk=1)

    def _get_labels(self) -> np.ndarray | None:
        return self._table[: self._count, LABEL].copy()

    def _get_checksums(self) -> np.ndarray | None:
        # Part of the index every reader loads anyway: nothing extra to read or check.
        return self._table[: self._count, CHECKSUM].view(np.uint64).copy()


#: bytes fetched per batch of concurrent ranged GETs in a remote ``read_many``
_REMOTE_BATCH_BYTES = 64 << 20


class RemoteTarStore(RemoteStore, TarStore):
    """A tar store read from a URL (``s3://bucket/x/``): the local reader with the bytes fetched remotely.

    The commit record and the index are read whole (and checked as locally);
    every image is then one ranged GET of its member, never a scan, and
    ``read_many`` fetches the runs of nearby members with concurrent ranged GETs
    (fsspec ``cat_ranges``) in batches of ~64 MiB, decoding each batch on the
    thread pool. A shard's size is checked against the commit record (one HEAD)
    before its first read.
    """

    def _init_handles(self) -> None:
        super()._init_handles()
        self._fs: Any = None
        self._root = ""
        self._checked: set[int] = set()  # shards whose size matched the commit record

    def _open_reader(self) -> dict[str, Any]:
        self._fs, self._root = self._remote_fs()
        self._checked = set()
        try:
            return self._load()
        except BaseException:
            self._close_reader()
            raise

    def _close_reader(self) -> None:
        self._fs = None
        super()._close_reader()

    def _reader_handles(self) -> Any:
        handles = (self._fs, super()._reader_handles())
        self._fs = None
        return handles

    def _cat(self, name: str, what: str, start: int, end: int) -> bytes:
        key = self._remote_key(self._root, name)
        return self._remote_call(what, lambda: self._fs.cat_file(key, start=start, end=end))

    def _read_small(self, name: str, limit: int) -> bytes:
        data = self._cat(name, name, 0, limit + 1)
        if len(data) > limit:
            raise CorruptStoreError(f"{self.path}/{name} is implausibly large (over {limit} bytes)")
        return data

    def _index_bytes(self, nbytes: int) -> bytes:
        if not nbytes:
            return b""
        return self._cat(INDEX, INDEX, 0, nbytes)

    def _check_shard(self, k: int) -> str:
        """The key of shard ``k``, its size checked against the commit record on first use."""
        name = self._shards[k]["name"]
        key = self._remote_key(self._root, name)
        if k not in self._checked:
            size = self._remote_call(f"shard {name}", lambda: self._fs.size(key))
            if size != self._shards[k]["size"]:
                raise self._shard_mismatch(k, size)
            self._checked.add(k)
        return key

    def _read_range(self, k: int, size: int, offset: int) -> bytes:
        self._check_shard(k)
        data = self._cat(self._shards[k]["name"], f"shard {self._shards[k]['name']}", offset, offset + size)
        if len(data) != size:
            raise self._shard_mismatch(k, f"is truncated ({len(data)} of {size} bytes at offset {offset})")
        return data

    def _read_runs(self, ranges: list[tuple[int, int, int]], use: Callable[[int, bytes], None]) -> None:
        batch_start, total = 0, 0
        for r, (_k, start, end) in enumerate(ranges):
            total += end - start
            if total >= _REMOTE_BATCH_BYTES or r == len(ranges) - 1:
                self._fetch_batch(ranges, batch_start, r + 1, use)
                batch_start, total = r + 1, 0

    def _fetch_batch(self, ranges: list[tuple[int, int, int]], lo: int, hi: int,
                     use: Callable[[int, bytes], None]) -> None:
        keys = [self._check_shard(k) for k, _s, _e in ranges[lo:hi]]
        starts = [s for _k, s, _e in ranges[lo:hi]]
        ends = [e for _k, _s, e in ranges[lo:hi]]
        got = self._remote_call("shard data", lambda: self._fs.cat_ranges(keys, starts, ends, on_error="return"))
        for r, data in zip(range(lo, hi), got):
            if isinstance(data, BaseException):
                raise self._remote_error(f"shard {self._shards[ranges[r][0]]['name']}", data) from None
            if len(data) != ranges[r][2] - ranges[r][1]:
                raise self._shard_mismatch(ranges[r][0], f"is truncated at offset {ranges[r][1]}")
        parallel.map_chunks(lambda s, e: [use(lo + j, got[j]) for j in range(s, e)], hi - lo,
                            self.options["threads"], chunk=1)
