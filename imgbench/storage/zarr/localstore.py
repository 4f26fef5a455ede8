"""The store's directory as zarr storage: zarr's ``LocalStore``, pinned by readers to the directory they opened.

A reader holds the directory open, opens every key relative to it without
following symlinks or blocking on a FIFO, and keeps the keys an appender may
rewrite open once read, so it never mixes two versions of a file (or reads a
store that replaced its own). A chunk it asks for and cannot find is an error,
never zarr's fill value.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import LocalStore

from imgbench.core import ownfiles
from imgbench.core.errors import CorruptStoreError
from imgbench.core.fileio import read_fd


def read_regular(path: Path, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of the store's file ``path``; None when it does not exist."""
    try:
        return ownfiles.read_own(path, limit)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CorruptStoreError(f"{path} is not a regular file") from None


METADATA_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})


def is_metadata_key(key: str) -> bool:
    """Metadata may be absent (zarr probes for it); a chunk we ask for may not."""
    return key.rpartition("/")[2] in METADATA_NAMES


class Pins:
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


class FileStore(LocalStore):
    """A ``LocalStore`` that readers pin to the directory they opened.

    Writers use it as a plain ``LocalStore`` (atomic temp-and-rename writes).
    Readers (``pins`` given) open keys relative to a directory descriptor, keep
    the keys in ``pins.keys`` open after first use, read inline on zarr's event
    loop (page-cache reads are faster than a thread hop) and raise
    CorruptStoreError for a missing chunk instead of letting zarr substitute the
    fill value.
    """

    def __init__(self, root: Path | str, *, read_only: bool = False, pins: Pins | None = None) -> None:
        super().__init__(root, read_only=read_only)
        self._pins = pins

    def with_read_only(self, read_only: bool = False) -> FileStore:
        return type(self)(self.root, read_only=read_only, pins=self._pins)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileStore) and self.root == other.root and self._pins is other._pins

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
            if is_metadata_key(key):
                raise KeyError(key) from None
            raise CorruptStoreError(
                f"{self.root}: {key} is missing (the store is damaged, or was replaced while it was open)"
            ) from None

    def _fstat_size(self, fd: int, key: str) -> int:
        """Size of an open key, refusing anything but a regular file (a FIFO, a device, a directory)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode) and is_metadata_key(key):
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
            return read_fd(fd, stop - start, start)
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
