"""A zarr store at a URL as zarr storage: zarr's ``FsspecStore`` with the reader's rules, for URL readers.

Adds what the reader asks of :class:`~imgbench.storage.zarr.localstore.FileStore`
(``size``, ``read``), makes a missing chunk a CorruptStoreError (zarr would return
the fill value) and a network or credential failure the one-line error of
:mod:`imgbench.core.transport`. Not pinned like a local reader (objects have no
descriptors to hold): if the store is replaced on the server while a reader has
it open, the reader may be served the new objects (``verify=True`` then fails the
checksums); reopen it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync as _zsync
from zarr.storage import FsspecStore

from imgbench.core.errors import ImgbenchError
from imgbench.storage.zarr.localstore import is_metadata_key


class URLStore(FsspecStore):
    """zarr's ``FsspecStore`` for readers of a store at a URL.

    Adds what the reader asks of ``FileStore`` (``size``, ``read``), makes a
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

    def with_read_only(self, read_only: bool = False) -> URLStore:
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
        if buf is None and not is_metadata_key(key):
            raise self._fail(key, FileNotFoundError(key))
        return buf

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges) -> list[Buffer | None]:
        import asyncio

        return list(await asyncio.gather(*(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)))


class RemoteZarrReading:
    """The hook of a zarr store read from a URL; mixed in before ``RemoteStore`` and ``ZarrStore``."""

    def _open_store(self, target: Any, reader: bool) -> URLStore:
        fs, root = self._remote_fs(asynchronous=True)
        return URLStore(fs, path=root, error=self._remote_error)
