"""Reading an HDF5 store from a URL (``s3://bucket/x.h5``): h5py on an fsspec file object.

Opening, the checks of every dataset and the chunk guard against decompression
bombs are the local reader's; reads go through fsspec's read-ahead cache of
``block_size`` bytes (option, default 2 MiB) instead of one ``pread`` per image.
:class:`imgbench.storage.hdf5.store.RemoteHDF5Store` puts these hooks in front
of the local reader's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import h5py

from imgbench.core.errors import UnsupportedError

#: default ``block_size`` option: bytes fsspec reads ahead per request
BLOCK_SIZE = 2 << 20


class _RemoteFile:
    """The file object h5py reads a remote store through: ranged GETs behind fsspec's read-ahead cache.

    Every GET is the filesystem's ``cat_file`` (for ``s3://``, bounded by the
    deadline of :mod:`imgbench.core.s3deadline`). h5py turns an exception raised
    in a file object's read into a generic HDF5 error, so a failed read is
    remembered and the reader raises it instead (a network error is not damage);
    the read raises it too (as a RemoteAccessError), for the paths where h5py
    passes the exception through, and for imgbench's own chunk reader (:meth:`pread`).
    """

    def __init__(self, fs: Any, key: str, size: int, block_size: int,
                 error: Callable[[str, BaseException], BaseException]):
        self.error, self.failure, self.loc = error, None, 0
        from fsspec.caching import ReadAheadCache  # the s3 extra: a local hdf5 store needs no fsspec

        self.cache = ReadAheadCache(block_size, lambda start, end: fs.cat_file(key, start=start, end=end), size)

    def _do(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.failure = self.error("the file", exc)
            raise self.failure from None

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.loc, 2: self.cache.size}[whence]
        self.loc = base + offset
        return self.loc

    def tell(self) -> int:
        return self.loc

    def read(self, size: int = -1) -> bytes:
        end = self.cache.size if size is None or size < 0 else self.loc + size
        data = self._do(lambda: self.cache._fetch(self.loc, end))
        self.loc += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (under h5py's lock: h5py seeks this same object)."""
        from h5py._objects import phil

        with phil:
            self.loc = offset
            return self.read(size)

    def close(self) -> None:
        self.cache = None


class RemoteHDF5Reading:
    """The byte-moving hooks of an HDF5 store read from a URL; mixed in before ``RemoteStore`` and ``HDF5Store``."""

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
        if self._fobj is not None:
            self._fobj.failure = None  # one from an earlier call that recovered is not this call's
        try:
            yield
        except Exception:
            fobj = self._fobj
            failure = fobj.failure if fobj is not None else None
            if failure is None:
                raise
            fobj.failure = None
            raise failure from None

    def _h5open(self, target: Any, mode: str, source: Any = None) -> h5py.File:
        fs, root = self._remote_fs()
        size = self._remote_call("the file", lambda: fs.size(root))
        self._fobj = _RemoteFile(fs, root, size, self.options["block_size"], self._remote_error)
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
