"""Tar backend: WebDataset-compatible tar shards plus a binary index, for streaming with ``s[i]`` too.

``webdataset`` streams the shards as they are (``tar tf`` lists them); the index
makes every image one ``pread``, never a scan. Layout: docs/formats/tar.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, codecs, ownfiles, parallel
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.fileio import pread_exact, pwrite_all
from imgbench.core.images import DTYPE_IDS, dtype_from_id
from imgbench.core.npyformat import npy_bytes, npy_decode, npy_header
from imgbench.core.store import Store, check_meta, stack_if_uniform
from imgbench.core.transport import RemoteStore
from imgbench.storage.tar import checks
from imgbench.storage.tar.layout import (
    CHECKSUM,
    COMMIT,
    INDEX,
    INDEX_COLUMNS,
    KIND,
    LABEL,
    MAX_COMMIT_BYTES,
    NCOL,
    OFFSET,
    ROW,
    SHARD,
    SHARD_RE,
    SIZE,
    shard_name,
)
from imgbench.storage.tar.members import BLOCK, EOA, member_header, pad
from imgbench.storage.tar.remote import RemoteTarReading

_ENCODE_BYTES = 64 << 20  # raw image bytes encoded per slice of a write
_WRITE_BYTES = 8 << 20  # tar bytes buffered before one pwrite
_GAP = 64 << 10  # bulk reads: neighbours closer than this share one pread
_RUN = {"png": 1 << 20, "none": 4 << 20}  # bulk reads: bytes per pread (and per decode task)
_MAX_CACHED_FDS = 256


class TarStore(Store):
    name = "tar"
    compressions = ("png", "none", "jpegls", "htj2k", "jpegxl", "lerc")
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
        self._table = np.zeros((0, NCOL), np.int64)
        self._shards: list[dict[str, Any]] = []
        self._fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._uniform: tuple[tuple[int, ...], np.dtype] | None = None
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
    def _open_in_dir(self, name: str, flags: int = ownfiles.OPEN_READ) -> int:
        """The store's file ``name`` (created by ``flags`` such as ``ownfiles.CREATE_NEW``), never through a symlink."""
        return ownfiles.open_own(name, self._dirfd, f"{self._dir}/{name}", flags)[0]

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
            return pread_exact(fd, size, 0, f"{self.path}/{name}")
        finally:
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        """Read and check the commit record and the index; nothing is trusted before it is checked."""
        try:
            meta = json.loads(self._read_small(COMMIT, MAX_COMMIT_BYTES))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{self.path}/{COMMIT} is not valid JSON ({exc})") from None
        meta = check_meta(meta, self.name, self.path)
        count = meta["count"]
        self._shards = checks.check_shards(meta.get("shards"), self.path)
        checks.check_index_columns(meta.get("index"), self.path)
        raw = self._index_bytes(count * ROW)
        if len(raw) < count * ROW:
            raise CorruptStoreError(
                f"{self.path}/{INDEX} is truncated: {len(raw)} bytes for {count} images ({ROW} bytes each)"
            )
        rows = np.frombuffer(raw, "<i8").reshape(count, NCOL).astype(np.int64)
        checks.check_index(rows, self._shards, meta.get("compression"), self.path)
        self._table = rows
        self._uniform = None
        if count and (rows[:, KIND] == rows[0, KIND]).all():
            self._uniform = self._kind(0)
        return meta

    def _index_bytes(self, nbytes: int) -> bytes:
        """The first ``nbytes`` of the index (fewer when it is shorter: the caller reports it truncated)."""
        fd, size = self._open_own(INDEX, f"{self.path} has no {INDEX} (damaged, or the store was replaced)")
        try:
            n = min(nbytes, size)
            return pread_exact(fd, n, 0, f"{self.path}/{INDEX}") if n else b""
        finally:
            os.close(fd)

    def _open_reader(self) -> dict[str, Any]:
        self._dirfd = ownfiles.open_dir(self.path)
        try:
            return self._load()
        except BaseException:
            self._close_reader()
            raise

    def _open_appender(self, target: Path) -> dict[str, Any]:
        self._dir = target
        self._dirfd = ownfiles.open_dir(target)
        try:
            meta = self._load()
            self._rows_written = meta["count"]
            self._committed_shards = len(self._shards)
            self._remove_leftovers()
            self._index_fd = self._open_in_dir(INDEX, os.O_RDWR)
            self._table = np.zeros((0, NCOL), np.int64)  # the appender needs no committed rows
            return meta
        except BaseException:
            self._close_fds()
            raise

    def _remove_leftovers(self) -> None:
        """Delete shards and commit-record temporaries an interrupted append left (we hold the writer lock)."""
        for entry in os.listdir(self._dirfd):
            m = SHARD_RE.fullmatch(entry)
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
        self._dirfd = ownfiles.open_dir(target)
        self._index_fd = self._open_in_dir(INDEX, ownfiles.CREATE_NEW)

    # ------------------------------------------------------------ writing
    def _write(self, images, labels, start, checksums=None) -> None:
        n = len(images)
        per = max(1, _ENCODE_BYTES // max(1, images[0].nbytes))
        try:
            for s in range(0, n, per):
                part = images[s : s + per]
                if self.compression == "none":  # a memory copy: a thread hop costs more
                    blobs = [npy_bytes(im) for im in part]
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
        rows = np.zeros((len(blobs), NCOL), np.int64)
        for j, blob in enumerate(blobs):
            key = b"%08d" % (start + j)
            size = len(blob)
            cls = None if label_list is None else b"%d" % label_list[j]
            sample = BLOCK + size + pad(size) + (0 if cls is None else 2 * BLOCK)
            if self._cur is None or (self._cur["pos"] > 0 and self._cur["pos"] + sample + len(EOA) > cap):
                self._roll()
            cur = self._cur
            pieces = [member_header(key + ext, size), blob, bytes(pad(size))]
            if cls is not None:
                pieces += [member_header(key + b".cls", len(cls)), cls, bytes(pad(len(cls)))]
            self._buf += pieces
            self._buf_len += sample
            shape = images[j].shape
            rows[j, :CHECKSUM] = (
                len(self._shards), cur["pos"] + BLOCK, size, 0 if cls is None else label_list[j],
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
            pwrite_all(self._cur["fd"], [data], self._buf_start)
            self._buf_start += len(data)
            self._buf_len = 0

    def _seal(self) -> int:
        """Write the end-of-archive blocks after the current shard's samples; return its size."""
        self._drain()
        cur = self._cur
        size = cur["pos"] + len(EOA)
        pwrite_all(cur["fd"], [EOA], cur["pos"])
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
        fd = self._open_in_dir(name, ownfiles.CREATE_NEW)
        self._created.append(name)
        self._cur = {"name": name, "fd": fd, "pos": 0, "samples": 0}
        self._buf, self._buf_start, self._buf_len = [], 0, 0

    def _fsync_name(self, name: str) -> None:
        fd = self._open_in_dir(name)
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
                pwrite_all(self._index_fd, [rows], self._rows_written * ROW)
                self._rows_written += len(rows)
                self._rows = []
            if self._rows_written != meta["count"]:
                raise ImgbenchError(f"internal error: {self._rows_written} index rows for {meta['count']} images")
            os.ftruncate(self._index_fd, self._rows_written * ROW)  # drops rows a killed appender left
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
                    os.ftruncate(self._index_fd, self._rows_written * ROW)
        finally:
            self._close_fds()
            self._rows, self._buf = [], []

    def _close_fds(self) -> None:
        if self._cur is not None:
            os.close(self._cur["fd"])
            self._cur = None
        if self._index_fd is not None:
            fd, self._index_fd = self._index_fd, None  # forgotten first: a Ctrl-C between must not close it twice
            os.close(fd)
        self._close_reader()

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        with self._fd_lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        if self._dirfd is not None:
            fd, self._dirfd = self._dirfd, None  # forgotten first: a Ctrl-C between must not close it twice
            os.close(fd)

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
            return pread_exact(fd, size, offset, f"shard {self._shards[k]['name']} of {self.path}")
        finally:
            if close:
                os.close(fd)

    def _kind(self, index: int) -> tuple[tuple[int, ...], np.dtype]:
        h, w, c, dt = self._table[index, KIND].tolist()
        return ((h, w, c) if c else (h, w)), dtype_from_id(dt)

    def _decode(self, index: int, data: bytes | memoryview) -> np.ndarray:
        shape, dtype = self._kind(index)
        try:
            if self.compression == "none":
                return npy_decode(data, dtype, shape)
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
        span = BLOCK + size + pad(size) + (0 if cls is None else 2 * BLOCK)
        if offset < BLOCK:
            raise CorruptStoreError(f"{self.path}: image {index} has no room for its tar header (offset {offset})")
        raw = self._read_range(k, span, offset - BLOCK)
        ext = codecs.CODECS[self.compression].suffix.encode()
        tail = BLOCK + size + pad(size)
        if raw[:BLOCK] != member_header(name + ext, size) or (
            cls is not None
            and (raw[tail : tail + BLOCK] != member_header(name + b".cls", len(cls))
                 or raw[tail + BLOCK : tail + BLOCK + len(cls)] != cls)
        ):
            raise CorruptStoreError(
                f"{self.path}: the tar members of image {index} are not {(name + ext).decode()}"
                f"{'' if cls is None else ' and ' + (name + b'.cls').decode()} as written (damaged, or renamed: "
                "a tar tool extracting this shard could write outside its folder)"
            )
        return raw[BLOCK : BLOCK + size]

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
        kinds = self._table[idx, KIND]
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
                header = npy_header(shape, dtype)
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


class RemoteTarStore(RemoteTarReading, RemoteStore, TarStore):
    """A tar store read from a URL (``s3://bucket/x/``): the local reader with the bytes fetched remotely
    (:class:`imgbench.storage.tar.remote.RemoteTarReading`)."""
