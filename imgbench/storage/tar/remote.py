"""Reading a tar store from a URL (``s3://bucket/x/``): the local reader's hooks that move bytes, remotely.

The commit record and the index are read whole (and checked as locally);
every image is then one ranged GET of its member, never a scan, and
``read_many`` fetches the runs of nearby members with concurrent ranged GETs
(fsspec ``cat_ranges``) in batches of ~64 MiB, decoding each batch on the
thread pool. A shard's size is checked against the commit record (one HEAD)
before its first read. :class:`imgbench.storage.tar.store.RemoteTarStore` puts
these hooks in front of the local reader's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imgbench.core import parallel
from imgbench.core.errors import CorruptStoreError
from imgbench.storage.tar.layout import INDEX

#: bytes fetched per batch of concurrent ranged GETs in a remote ``read_many``
_REMOTE_BATCH_BYTES = 64 << 20


class RemoteTarReading:
    """The byte-moving hooks of a tar store read from a URL; mixed in before ``RemoteStore`` and ``TarStore``."""

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
