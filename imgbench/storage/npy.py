"""npy backend: raw pixels in one memory-mapped file, the physical-limit reference as a real store.

Nothing stands between the reader and the bytes (a uniform store is one
``(N, H, W[, C])`` array over a map), yet the whole contract holds: labels,
checksums, attrs, atomic ``w`` and crash-safe in-place append. Layout:
docs/formats/npy.md.
"""

from __future__ import annotations

import json
import math
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, ownfiles
from imgbench.core.errors import CorruptStoreError, ImgbenchError, UnsupportedError
from imgbench.core.fileio import pread_exact, pwrite_all
from imgbench.core.images import (
    DTYPE_CODES,
    DTYPE_IDS,
    ITEMSIZE_BY_ID,
    dtype_from_code,
    dtype_from_id,
)
from imgbench.core.store import Store, check_meta, stack_if_uniform

COMMIT = "imgbench-npy.json"
DATA = "data.bin"
INDEX = "index.bin"
INDEX_DTYPE = np.dtype(
    [
        ("offset", "<i8"),
        ("label", "<i8"),
        ("h", "<u4"),
        ("w", "<u4"),
        ("c", "<u4"),
        ("dtype", "<u4"),
        ("checksum", "<u8"),
    ]
)
ROW = INDEX_DTYPE.itemsize  # 40
_MAX_COMMIT_BYTES = 64 << 20  # the commit record holds attrs, not per-image data


def _le(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


class NpyStore(Store):
    name = "npy"
    compressions = ("none",)
    raw_reference = True
    stores_checksums = True
    option_defaults = {
        "sync": True,  # fsync data, index and commit record before an append or a new store becomes visible
    }

    def _check_options(self) -> None:
        if not isinstance(self.options["sync"], bool):
            raise UnsupportedError(f"sync must be True or False, got {self.options['sync']!r}")

    def _check_dtype(self, dtype: np.dtype) -> None:
        """Raw bytes hold every supported dtype exactly."""

    def _init_handles(self) -> None:
        self._dir: Path | None = None
        self._data_fd: int | None = None
        self._index_fd: int | None = None
        self._map: mmap.mmap | None = None
        self._view: np.ndarray | None = None  # uniform: (count, *shape) read-only view of the map
        self._rows: np.ndarray | None = None  # ragged readers: the validated index
        self._uniform: tuple[tuple[int, ...], np.dtype] | None | bool = None
        # writers: what is written (ends) and what the commit record says (committed)
        self._data_end = self._row_count = 0
        self._committed = (0, 0)  # (data_bytes, count)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / COMMIT).is_file()

    remote_refusal = "it is read through a memory map of a local file"

    @classmethod
    def detect_remote(cls, probe) -> bool:
        return probe.names is not None and COMMIT in probe.names

    # ------------------------------------------------------------ commit record
    def _parse_commit(self, raw: bytes, where: Path) -> dict[str, Any]:
        """Decode and check the commit record's npy-specific fields; sets ``_uniform``."""
        try:
            meta = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(f"{where / COMMIT} is not valid JSON ({exc})") from None
        # The common header first: nothing (not even an appender's clean-up) may act
        # on a store of another backend or of a newer format version.
        meta = check_meta(meta, self.name, where)
        if meta.get("compression") not in self.compressions:
            raise CorruptStoreError(f"{where / COMMIT}: unknown compression {meta.get('compression')!r}")
        count, data_bytes = meta["count"], meta.get("data_bytes")
        if isinstance(data_bytes, bool) or not isinstance(data_bytes, int) or data_bytes < 0:
            raise CorruptStoreError(f"{where / COMMIT}: invalid data_bytes {data_bytes!r}")
        try:
            descr = [tuple(field) for field in meta.get("index_dtype")]
            same_layout = np.dtype(descr) == INDEX_DTYPE
        except Exception:  # whatever a hostile descr makes numpy raise
            same_layout = False
        if not same_layout:
            raise CorruptStoreError(f"{where / COMMIT}: index_dtype is not the row layout this imgbench reads")
        uniform = meta.get("uniform")
        if uniform is None:
            self._uniform = False if count else None
            if count == 0 and data_bytes != 0:
                raise CorruptStoreError(f"{where / COMMIT}: no images but {data_bytes} data bytes")
        else:
            try:
                shape = tuple(uniform["shape"])
                dtype = dtype_from_code(uniform["dtype"])
            except (KeyError, TypeError):
                raise CorruptStoreError(f"{where / COMMIT}: 'uniform' entry is malformed") from None
            if (
                len(shape) not in (2, 3)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
                or (len(shape) == 3 and shape[2] > 4)
            ):
                raise CorruptStoreError(f"{where / COMMIT}: impossible uniform image shape {shape!r}")
            if count * math.prod(shape) * dtype.itemsize != data_bytes:
                raise CorruptStoreError(
                    f"{where / COMMIT}: {count} images of {shape} {dtype} do not fill {data_bytes} data bytes"
                )
            self._uniform = (shape, dtype) if count else None
        meta["data_bytes"] = data_bytes
        return meta

    def _commit_record(self, meta: dict[str, Any]) -> bytes:
        meta = dict(meta)
        meta["data_bytes"] = self._data_end
        meta["index_dtype"] = [list(f) for f in INDEX_DTYPE.descr]
        meta["uniform"] = (
            {"shape": list(self._uniform[0]), "dtype": DTYPE_CODES[self._uniform[1]]} if self._uniform else None
        )
        return json.dumps(meta).encode()

    @staticmethod
    def _check_sizes(data_fd: int, index_fd: int, data_bytes: int, count: int, where: Path) -> None:
        """Refuse files shorter than the commit record says: mapping them would SIGBUS."""
        have_data, have_index = os.fstat(data_fd).st_size, os.fstat(index_fd).st_size
        if have_data < data_bytes:
            raise CorruptStoreError(
                f"{where / DATA} is truncated: {have_data} bytes, the commit record says {data_bytes}"
            )
        if have_index < count * ROW:
            raise CorruptStoreError(
                f"{where / INDEX} is truncated: {have_index} bytes, {count} images need {count * ROW}"
            )

    # ------------------------------------------------------------ reading: open
    def _open_reader(self) -> dict[str, Any]:
        # Everything is opened relative to one directory descriptor, so the commit
        # record and the files it describes come from the same store even if a
        # writer swaps a new store in at this path meanwhile.
        try:
            dirfd = ownfiles.open_dir(self.path)
        except NotADirectoryError:
            raise CorruptStoreError(f"{self.path} is not a directory; it is not an npy store") from None
        try:
            raw = self._read_commit(dirfd)
            meta = self._parse_commit(raw, self.path)
            self._data_fd = self._open_file(DATA, dirfd)[0]
            self._index_fd = self._open_file(INDEX, dirfd)[0]
            self._map_data(meta["count"], meta["data_bytes"])
        except BaseException:
            self._close_reader()
            raise
        finally:
            os.close(dirfd)
        return meta

    def _open_file(
        self, name: str, dirfd: int | None, where: Path | None = None, flags: int = ownfiles.OPEN_READ
    ) -> tuple[int, int]:
        """(fd, size) of a regular file of the store (a FIFO or device here must not block or map, a
        symlink is never followed)."""
        where = self.path if where is None else where
        what = f"{where}: {os.path.basename(name)}"
        try:
            return ownfiles.open_own(name, dirfd, what, flags, mode=0o644)
        except FileNotFoundError:
            raise CorruptStoreError(f"{what} is missing") from None
        except IsADirectoryError:
            raise CorruptStoreError(f"{what} is not a regular file") from None

    def _read_commit(self, dirfd: int, where: Path | None = None) -> bytes:
        where = self.path if where is None else where
        fd, size = self._open_file(COMMIT, dirfd, where)
        try:
            if size > _MAX_COMMIT_BYTES:
                raise CorruptStoreError(f"{where / COMMIT} is implausibly large")
            return ownfiles.read_fd(fd, size)
        finally:
            os.close(fd)

    def _map_data(self, count: int, data_bytes: int) -> None:
        self._check_sizes(self._data_fd, self._index_fd, data_bytes, count, self.path)
        if self._uniform:
            # Cross-check the first and last index rows with the commit record (O(1)).
            shape, dtype = self._uniform
            nbytes = math.prod(shape) * dtype.itemsize
            for i in {0, count - 1}:
                row = self._index_rows(1, i)[0]
                dims = (int(row["h"]), int(row["w"])) + ((int(row["c"]),) if row["c"] else ())
                if int(row["offset"]) != i * nbytes or dims != shape or int(row["dtype"]) != DTYPE_IDS[dtype]:
                    raise CorruptStoreError(f"{self.path / INDEX}: row {i} disagrees with the commit record")
        elif count:
            self._rows = self._load_rows(count, data_bytes)
        if data_bytes:
            # Map exactly what the commit record covers, never more.
            self._map = mmap.mmap(self._data_fd, data_bytes, access=mmap.ACCESS_READ)
            if self._uniform:
                shape, dtype = self._uniform
                self._view = np.frombuffer(self._map, dtype=_le(dtype)).reshape(count, *shape)

    def _load_rows(self, count: int, data_bytes: int) -> np.ndarray:
        """Read and validate the whole index of a ragged store (vectorised)."""
        where = self.path / INDEX
        rows = self._index_rows(count)
        ids = rows["dtype"]
        itemsize = ITEMSIZE_BY_ID[np.minimum(ids, 255)]
        h, w, c = (rows[k].astype(np.int64) for k in ("h", "w", "c"))
        bad = (ids > 255) | (itemsize == 0) | (h < 1) | (w < 1) | (c > 4)
        if bad.any():
            i = int(np.argmax(bad))
            raise CorruptStoreError(
                f"{where}: image {i} has an impossible shape ({h[i]}, {w[i]}, {c[i]}) or dtype id {int(ids[i])}"
            )
        # Sizes as floats first: a hostile shape must not overflow int64 arithmetic.
        approx = h.astype(np.float64) * w * np.maximum(c, 1) * itemsize
        if approx.max() > data_bytes or approx.sum() > 2.0**62:
            i = int(np.argmax(approx))
            raise CorruptStoreError(f"{where}: image {i} claims {approx[i]:.0f} bytes, more than the data file holds")
        sizes = h * w * np.maximum(c, 1) * itemsize
        ends = np.cumsum(sizes)
        offsets = rows["offset"]
        if int(ends[-1]) != data_bytes or offsets[0] != 0 or not np.array_equal(offsets[1:], ends[:-1]):
            raise CorruptStoreError(
                f"{where}: offsets are not contiguous or do not add up to the {data_bytes} committed data bytes"
            )
        return rows

    def _open_appender(self, target: Path) -> dict[str, Any]:
        self._dir = target
        try:
            dirfd = ownfiles.open_dir(target)
        except (FileNotFoundError, NotADirectoryError):
            raise CorruptStoreError(f"{target} is not a directory; it is not an npy store") from None
        try:
            raw = self._read_commit(dirfd, target)
        finally:
            os.close(dirfd)
        meta = self._parse_commit(raw, target)
        count, data_bytes = meta["count"], meta["data_bytes"]
        try:
            for attr, name in (("_data_fd", DATA), ("_index_fd", INDEX)):
                setattr(self, attr, self._open_file(str(target / name), None, target, os.O_RDWR)[0])
            self._check_sizes(self._data_fd, self._index_fd, data_bytes, count, target)
            # Cut off what an interrupted append left past the commit (we hold the
            # writer lock, and readers never look past the commit).
            os.ftruncate(self._data_fd, data_bytes)
            os.ftruncate(self._index_fd, count * ROW)
        except FileNotFoundError as exc:
            self._close_fds()
            raise CorruptStoreError(f"{target}: {Path(exc.filename).name} is missing") from None
        except IsADirectoryError as exc:
            self._close_fds()
            raise CorruptStoreError(f"{target}: {Path(exc.filename).name} is not a regular file") from None
        except BaseException:
            self._close_fds()
            raise
        for entry in os.scandir(target):  # commit-record temporaries of killed writers
            if entry.name.startswith(f".{COMMIT}.") and entry.name.endswith(".part"):
                atomic.remove(Path(entry.path))
        self._data_end, self._row_count = data_bytes, count
        self._committed = (data_bytes, count)
        return meta

    def _create(self, target: Path) -> None:
        target.mkdir()
        self._dir = target
        self._data_fd = self._open_file(str(target / DATA), None, target, ownfiles.CREATE_NEW)[0]
        self._index_fd = self._open_file(str(target / INDEX), None, target, ownfiles.CREATE_NEW)[0]
        self._uniform = None

    # ------------------------------------------------------------ writing
    def _write(self, images, labels, start, checksums=None) -> None:
        if start != self._row_count:
            raise ImgbenchError(f"internal error: writing image {start} after {self._row_count} images")
        if isinstance(images, np.ndarray):
            n, shape, dtype = len(images), images.shape[1:], images.dtype
            kinds = {(shape, dtype)}
            nbytes = math.prod(shape) * dtype.itemsize
            buffers = [np.ascontiguousarray(images, dtype=_le(dtype))]
            rows = np.zeros(n, INDEX_DTYPE)
            rows["offset"] = self._data_end + np.arange(n, dtype=np.int64) * nbytes
            rows["h"], rows["w"] = shape[0], shape[1]
            rows["c"] = shape[2] if len(shape) == 3 else 0
            rows["dtype"] = DTYPE_IDS[dtype]
            total = n * nbytes
        else:
            n = len(images)
            kinds = {(im.shape, im.dtype) for im in images}
            buffers = [np.ascontiguousarray(im, dtype=_le(im.dtype)) for im in images]
            sizes = np.fromiter((im.nbytes for im in images), np.int64, n)
            rows = np.zeros(n, INDEX_DTYPE)
            rows["offset"] = self._data_end + np.cumsum(sizes) - sizes
            dims = np.array([im.shape + (0,) * (3 - im.ndim) for im in images], np.int64).reshape(n, 3)
            rows["h"], rows["w"], rows["c"] = dims[:, 0], dims[:, 1], dims[:, 2]
            rows["dtype"] = np.fromiter((DTYPE_IDS[im.dtype] for im in images), np.uint32, n)
            total = int(sizes.sum())
        if labels is not None:
            rows["label"] = labels
        if checksums is not None:
            rows["checksum"] = checksums
        try:
            # Pixels first, then their index rows; neither counts until the commit record says so.
            end = pwrite_all(self._data_fd, buffers, self._data_end)
            pwrite_all(self._index_fd, [rows], self._row_count * ROW)
        except OSError as exc:
            raise ImgbenchError(f"writing images to {self._dir} failed: {exc}") from exc
        if end != self._data_end + total:
            raise ImgbenchError(f"internal error: wrote {end - self._data_end} of {total} bytes")
        self._data_end, self._row_count = end, self._row_count + n
        if self._uniform is None:
            self._uniform = next(iter(kinds)) if len(kinds) == 1 else False
        elif self._uniform and kinds != {self._uniform}:
            self._uniform = False

    def _flush(self, meta) -> None:
        if meta["count"] != self._row_count:
            raise ImgbenchError(f"internal error: {meta['count']} images counted, {self._row_count} written")
        sync = self.options["sync"]
        try:
            if sync:
                os.fsync(self._data_fd)
                os.fsync(self._index_fd)
            atomic.write_file(self._dir / COMMIT, self._commit_record(meta), sync=sync)
        except OSError as exc:
            raise ImgbenchError(f"writing {self._dir / COMMIT} failed: {exc}") from exc
        self._committed = (self._data_end, self._row_count)

    def _close_fds(self) -> None:
        for attr in ("_data_fd", "_index_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _close_writer(self, commit: bool) -> None:
        if not commit and self.mode == "a" and self._data_fd is not None:
            # Not needed for safety (the commit record is the truth), only to leave
            # the files as long as what they hold.
            data_bytes, count = self._committed
            try:
                os.ftruncate(self._data_fd, data_bytes)
                os.ftruncate(self._index_fd, count * ROW)
            except OSError:
                pass
        self._close_fds()

    # ------------------------------------------------------------ reading
    def _close_reader(self) -> None:
        self._view = None
        self._rows = None
        if self._map is not None:
            m, self._map = self._map, None
            try:
                m.close()
            except BufferError:
                pass  # a view is still alive somewhere; the map goes with it
        self._close_fds()

    def _reader_handles(self) -> Any:
        handles = (self._map, self._view, self._data_fd, self._index_fd)
        self._map = self._view = self._rows = None
        self._data_fd = self._index_fd = None
        return handles  # inherited: left alone, the parent still uses them

    def _ragged_one(self, index: int) -> np.ndarray:
        row = self._rows[index]
        dtype = dtype_from_id(int(row["dtype"]))
        shape = (int(row["h"]), int(row["w"])) + ((int(row["c"]),) if row["c"] else ())
        raw = np.frombuffer(self._map, dtype=_le(dtype), count=math.prod(shape), offset=int(row["offset"]))
        return raw.reshape(shape).astype(dtype)  # astype copies: the caller owns it

    def _get(self, index: int) -> np.ndarray:
        if self._uniform:
            return self._view[index].astype(self._uniform[1])
        return self._ragged_one(index)

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        if self._uniform:
            out = self._view.take(indices, axis=0)
            return out if out.dtype == self._uniform[1] else out.astype(self._uniform[1])
        return stack_if_uniform([self._ragged_one(i) for i in indices.tolist()])

    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        if self._uniform:
            return self._view.astype(self._uniform[1])  # one copy out of the map
        return stack_if_uniform([self._ragged_one(i) for i in range(self._count)])

    def _index_rows(self, count: int, offset: int = 0) -> np.ndarray:
        """``count`` rows of the index from row ``offset``, read now (a uniform reader never loads the
        index). The file was checked to hold every row when the store was opened: a read that comes up
        short now is a CorruptStoreError, not a short array."""
        raw = pread_exact(self._index_fd, count * ROW, offset * ROW, str(self.path / INDEX))
        return np.frombuffer(raw, INDEX_DTYPE)

    def _get_labels(self) -> np.ndarray | None:
        rows = self._rows if self._rows is not None else self._index_rows(self._count)
        return rows["label"][: self._count].astype(np.int64)

    def _get_checksums(self) -> np.ndarray | None:
        rows = self._rows if self._rows is not None else self._index_rows(self._count)
        return rows["checksum"][: self._count].astype(np.uint64)
