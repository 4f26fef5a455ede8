"""s3fs with a wall-clock deadline on every request, and botocore timeouts and retries that fit inside it.

s3fs alone can wait for minutes on a server that accepts connections and never
answers: its 15 s read timeout is multiplied by botocore's retries and by two
nested s3fs retry loops (``_cat_file`` and ``_call_s3`` each retry 5 times).
:class:`DeadlineS3FileSystem` bounds each request -- a listing, a HEAD, one GET
of an object or of a byte range, with every retry it makes -- by
``remote_timeout`` seconds of wall clock (:func:`asyncio.wait_for`, which also
cancels the request), and raises :class:`DeadlineExceeded` on expiry, which is
not retried. Nested calls (``_info`` falling back to a listing, ``_cat_file``
calling ``_call_s3``) share the outermost call's deadline. A zero-byte object
read with a byte range (which S3 refuses as "range not satisfiable") is read as
empty, as a local file is, so the reader's own checks call it damaged.

Imported only when an ``s3://`` URL is opened (it imports s3fs).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import s3fs

#: set while a bounded call runs, so that the calls it makes share its deadline
_BOUNDED: contextvars.ContextVar[bool] = contextvars.ContextVar("imgbench_s3_bounded", default=False)


class DeadlineExceeded(Exception):
    """A request to the object store did not finish within the deadline (deliberately not a TimeoutError or
    OSError: s3fs retries those, and a deadline must end the call)."""

    def __init__(self, timeout: float, path: str):
        super().__init__(f"no answer within {timeout:g} s for {path}")
        self.timeout, self.path = timeout, path


def _empty_range_error(exc: BaseException) -> bool:
    """Is ``exc`` S3's answer to a byte range of a zero-byte object (HTTP 416 InvalidRange)?"""
    text = str(exc)
    return isinstance(exc, OSError) and ("InvalidRange" in text or "not satisfiable" in text)


class DeadlineS3FileSystem(s3fs.S3FileSystem):
    """``s3fs.S3FileSystem`` whose requests each finish (or raise :class:`DeadlineExceeded`) within
    ``remote_timeout`` seconds, retries included."""

    # s3fs's own retry loops nest (up to retries**2 attempts); two each, with botocore's
    # own attempts set by filesystem(), keep a failing server's answer well inside the deadline
    retries = 2

    def __init__(self, *args: Any, remote_timeout: float, **kwargs: Any):
        self.remote_timeout = float(remote_timeout)
        super().__init__(*args, **kwargs)

    async def _bounded(self, path: str, coro: Any) -> Any:
        if _BOUNDED.get():
            return await coro
        token = _BOUNDED.set(True)
        try:
            return await asyncio.wait_for(coro, self.remote_timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(self.remote_timeout, path) from None
        finally:
            _BOUNDED.reset(token)

    async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
        where = f"{kwargs.get('Bucket', '')}/{kwargs.get('Key', kwargs.get('Prefix', ''))}".rstrip("/")
        return await self._bounded(where, super()._call_s3(method, *akwarglist, **kwargs))

    async def _cat_file(self, path: str, version_id: str | None = None, start: int | None = None,
                        end: int | None = None, **kwargs: Any) -> bytes:
        async def read() -> bytes:
            try:
                return await s3fs.S3FileSystem._cat_file(self, path, version_id=version_id, start=start, end=end,
                                                         **kwargs)
            except OSError as exc:
                if (start or 0) >= 0 and _empty_range_error(exc) and await self._size(path) == 0:
                    return b""
                raise

        return await self._bounded(path, read())

    async def _info(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await self._bounded(path, super()._info(path, *args, **kwargs))

    async def _ls(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(path, super()._ls(path, *args, **kwargs))

    async def _find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(path, super()._find(path, *args, **kwargs))
