"""The local sharded dataset: :class:`ShardedStore`, the Store contract over a directory of shard stores.

Image ``i`` is found by a binary search over the manifest's cumulative counts (no
scan), and its shard is opened on first use (at most :data:`MAX_OPEN_SHARDS` at
once). ``w``/``x`` build the whole directory under a hidden temporary name and
rename it into place on a clean close; ``a`` adds new shards, then replaces the
manifest atomically under the writer lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, checksum, transport
from imgbench.core.errors import CorruptStoreError, ImgbenchError, StoreReplacedError, UnsupportedError
from imgbench.core.store import Attrs, Store, stack_if_uniform
from imgbench.core.transport import URL
from imgbench.sharded.build import check_limit, shard_name
from imgbench.sharded.leftovers import remove_leftovers
from imgbench.sharded.manifest import (
    build_manifest,
    describe_shard,
    detect,
    digest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from imgbench.storage import registry

#: the options of :func:`imgbench.open` that make (or extend) a sharded dataset
SHARD_OPTIONS = ("images_per_shard", "bytes_per_shard")
#: shards a reader keeps open at once (file descriptors and maps); least recently used are closed
MAX_OPEN_SHARDS = 64


def wanted(path: str | os.PathLike, mode: str, options: dict[str, Any]) -> bool:
    """Should :func:`imgbench.open` hand this call to :class:`ShardedStore`?

    Reading or appending: when a manifest is at ``path``. Creating: when a shard
    limit (``images_per_shard=`` or ``bytes_per_shard=``) is given. A limit given
    as None means "no limit" and is removed from ``options``, so
    ``open(..., images_per_shard=None)`` makes a plain store.
    """
    for key in SHARD_OPTIONS:
        if key in options and options[key] is None:
            del options[key]
    if mode in ("r", "a"):
        return detect(path)
    return any(key in options for key in SHARD_OPTIONS)


class ShardedStore(Store):
    """A sharded dataset opened through :func:`imgbench.open`; the Store contract over all its shards.

    ``backend`` is the shards' backend (``"lmdb"``...); ``shards`` the number of
    shards. Reads group indices by shard so each shard does one batched read.
    """

    name = "sharded"  # instances report their shards' backend instead
    compressions: tuple[str, ...] = ()
    in_place_append = True  # new shards plus an atomically replaced manifest
    stores_checksums = True
    _preread: dict[str, Any] | None = None

    def __init__(self, path: Path, mode: str, compression: str | None, level: int | None, options: dict,
                 backend: str | None = None):
        options = dict(options)
        given = {key: options.pop(key, None) for key in SHARD_OPTIONS}
        limit = check_limit(given["images_per_shard"], given["bytes_per_shard"])
        self.path = path
        if mode == "r":
            if limit is not None:
                raise UnsupportedError(
                    "images_per_shard/bytes_per_shard choose how a dataset is written; drop them to read it"
                )
            self._preread = self._read_manifest_pinned()
            inner = self._preread["backend"]
        elif mode == "a":
            inner = read_manifest(path)["backend"]
        else:
            inner = backend if backend is not None else registry.from_suffix(path).name
        if backend is not None and backend != inner:
            raise UnsupportedError(
                f"{path} is a sharded dataset of {inner} stores, not {backend}; drop backend= to detect it"
            )
        self._set_backend(inner)
        self._limit = limit
        super().__init__(path, mode, compression, level, options)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return detect(path)

    def _what(self) -> str:
        return f"sharded {self.name} dataset"

    def _read_manifest(self) -> dict[str, Any]:
        """The validated manifest at ``self.path`` (local file here; an object for remote readers)."""
        return read_manifest(self.path)

    def _identity(self) -> tuple[int, int] | None:
        """(device, inode) of the dataset directory now at ``self.path``; None for a URL or nothing there."""
        if isinstance(self.path, URL):
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _read_manifest_pinned(self) -> dict[str, Any]:
        """The manifest, with the identity of the directory it was read from (``_opened_as``), so that shards
        opened later are known to come from that same dataset and not from one a ``w`` swapped in since."""
        for _ in range(10):
            before = self._identity()
            meta = self._read_manifest()
            if self._identity() == before:
                break
        self._opened_as = before
        return meta

    def _check_not_replaced(self) -> None:
        """StoreReplacedError when the directory at the path is no longer the dataset this reader opened
        (a legal ``w`` replaced it): its shards are gone or another dataset's, never "damaged"."""
        opened = getattr(self, "_opened_as", None)
        if opened is not None and self._identity() != opened:
            raise StoreReplacedError(
                f"{self.path}: the dataset was replaced since it was opened; reopen it to read the new one "
                "(mode 'w' or convert --overwrite wrote it; nothing is damaged)"
            )

    def _shard_class(self, inner: str) -> type[Store]:
        """The class that reads (and writes) this dataset's shards of backend ``inner``."""
        return registry.get(inner)

    def _find_shard(self, path: Path | URL, where: str) -> bool | None:
        """Is ``path`` a store of the shards' backend? None when nothing is there. A symlink or special
        file is never a shard (CorruptStoreError): reading through it would leave the dataset."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise CorruptStoreError(f"{where} is a symlink or special file; shards are plain files or directories")
        return self._inner_cls.detect(path)

    def _set_backend(self, inner: str) -> None:
        cls = self._shard_class(inner)
        self._inner_cls = cls
        self.name = inner
        self.compressions = cls.compressions
        self.option_defaults = dict(cls.option_defaults)

    # ---------------------------------------------------------- metadata
    def _init_handles(self) -> None:
        self._open: OrderedDict[int, Store] = OrderedDict()  # readers: shard index -> open shard
        self._sums: dict[int, np.ndarray | None] = {}  # shard index -> its checksums (checked at open)
        self._labs: dict[int, np.ndarray | None] = {}
        self._shard: Store | None = None  # writers: the shard being written
        self._shard_count = 0
        self._shard_bytes = 0
        self._written = 0  # entries named by the manifest on disk (appenders)

    def _adopt_meta(self, meta: dict[str, Any]) -> None:
        meta = validate_manifest(meta, self.path)
        self._set_backend(meta["backend"])
        self.compression = meta["compression"]
        self.level = meta["level"]
        self._count = meta["count"]
        self._checksummed = meta["checksum"] == checksum.ALGORITHM
        self._labelled = meta["labels"] if self._count else None
        self._attrs = Attrs(meta.get("attrs", {}), writable=self.mode != "r")
        self._entries = [dict(e) for e in meta["shards"]]
        self._written = len(self._entries)
        if getattr(self, "_limit", None) is None:
            self._limit = meta.get("limit")
        counts = np.array([e["count"] for e in self._entries], np.int64)
        self._ends = np.cumsum(counts)
        self._starts = self._ends - counts

    def _meta(self) -> dict[str, Any]:
        return build_manifest(self._entries, backend=self.name, compression=self.compression, level=self.level,
                              attrs=self._attrs.to_dict(), limit=self._limit, where=self.path)

    def _check_level(self, compression: str, level: int | None) -> int | None:
        # Checked by the first shard's own backend when it is created (_create).
        return level

    def _check_dtype(self, dtype: np.dtype) -> None:
        self._current()._check_dtype(dtype)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        self._current()._check_shape(shape)

    @property
    def shards(self) -> int:
        """Number of shards named by the manifest."""
        return len(self._entries)

    @property
    def shard_names(self) -> list[str]:
        """The shards named by the manifest, in dataset order."""
        return [e["name"] for e in self._entries]

    # ------------------------------------------------------------ writing
    def _inner_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k in self._inner_cls.option_defaults}

    def _create(self, target: Path) -> None:
        target.mkdir()
        self._root = target
        self._entries: list[dict[str, Any]] = []
        self._ends = self._starts = np.zeros(0, np.int64)
        self.level = self._current().level  # validates compression, level and options before any image

    def _open_appender(self, target: Path) -> dict[str, Any]:
        self._root = target
        meta = read_manifest(target)
        self.compression, self.level = meta["compression"], meta["level"]
        self._entries = [dict(e) for e in meta["shards"]]
        # Shards (and temporaries) a killed appender published but never committed: under the lock, gone.
        remove_leftovers(target, (e["name"] for e in self._entries))
        return meta

    def _current(self) -> Store:
        """The shard being written, created on demand under the next free name."""
        if self._shard is None:
            taken = {e["name"] for e in self._entries}
            k = len(self._entries)
            while shard_name(k, self.name) in taken:
                k += 1
            name = shard_name(k, self.name)
            path = self._root / name
            if os.path.lexists(path):
                # Not named by the manifest: a shard of an append that did not finish.
                atomic.remove(path)
            self._shard = self._inner_cls(path, "x", self.compression, self.level, self._inner_options())
            self._shard_name = name
            self._shard_count = self._shard_bytes = 0
        return self._shard

    def _room(self, images: np.ndarray | list[np.ndarray], k: int) -> int:
        """How many of ``images[k:]`` go into the current shard before it must end."""
        n = len(images) - k
        if self._limit is None or "shards" in self._limit:
            return n
        if "images" in self._limit:
            return max(0, min(n, self._limit["images"] - self._shard_count))
        cap = self._limit["bytes"]
        if isinstance(images, np.ndarray):
            per = max(1, images[0].nbytes)
            room = (cap - self._shard_bytes) // per
        else:
            room, total = 0, self._shard_bytes
            for image in images[k:]:
                if total + image.nbytes > cap:
                    break
                total += image.nbytes
                room += 1
        if self._shard_count == 0:
            room = max(room, 1)
        return max(0, min(n, room))

    def _write_checked(self, images: np.ndarray | list[np.ndarray], labels: np.ndarray | None, start: int) -> None:
        # Each shard digests its own images; nothing to compute here.
        self._check_still_ours()
        self._write(images, labels, start)

    def _write(self, images: np.ndarray | list[np.ndarray], labels: np.ndarray | None, start: int) -> None:
        n, k = len(images), 0
        while k < n:
            shard = self._current()
            take = self._room(images, k)
            if take == 0:
                self._seal()
                continue
            part = images[k:k + take]
            shard.extend(part, labels=None if labels is None else labels[k:k + take])
            self._shard_count += take
            self._shard_bytes += part.nbytes if isinstance(part, np.ndarray) else sum(im.nbytes for im in part)
            k += take
            if self._limit and (self._limit.get("images") == self._shard_count
                                or self._limit.get("bytes") == self._shard_bytes):
                self._seal()

    def _seal(self) -> None:
        """Publish the current shard and add it to the entries (not yet to the manifest on disk)."""
        shard, self._shard = self._shard, None
        if shard is None:
            return
        if self._shard_count == 0:
            shard._abort_quietly()
            return
        shard.close()
        self._entries.append(describe_shard(self._root, self._shard_name))

    def _write_manifest(self) -> None:
        manifest = self._meta()
        if manifest["count"] != self._count:
            raise ImgbenchError(f"{self.path}: shards hold {manifest['count']} images, the writer counted {self._count}")
        write_manifest(self._root, manifest, sync=bool(self.options.get("sync", True)))
        self._written = len(self._entries)
        self._attrs.dirty = False

    def _flush(self, meta: dict[str, Any]) -> None:
        if self.mode == "a":
            self._seal()
            if len(self._entries) != self._written or self._attrs.dirty:
                self._write_manifest()
        elif self._shard is not None and self._shard_count:
            self._shard.flush()

    def _close_writer(self, commit: bool) -> None:
        if not commit:
            shard, self._shard = self._shard, None
            if shard is not None:
                shard._abort_quietly()
            return
        self._seal()
        if self.mode != "a":
            self._write_manifest()
        elif len(self._entries) != self._written or self._attrs.dirty:
            self._write_manifest()

    # ------------------------------------------------------------ reading
    def _open_reader(self) -> dict[str, Any]:
        self._open = OrderedDict()
        self._sums, self._labs = {}, {}
        meta, self._preread = self._preread, None
        return meta if meta is not None else self._read_manifest_pinned()

    def _reader_handles(self) -> Any:
        return self._open

    def _close_reader(self) -> None:
        shards, self._open = self._open, OrderedDict()
        for shard in shards.values():
            try:
                shard.close()
            except Exception:
                pass

    def _reader_shard(self, k: int) -> Store:
        """Shard ``k``, open for reading and checked against the manifest (least recently used closed)."""
        shard = self._open.get(k)
        if shard is not None:
            self._open.move_to_end(k)
            return shard
        self._check_not_replaced()
        try:
            shard = self._open_shard(k)
        except CorruptStoreError:
            self._check_not_replaced()  # swapped between the check and the open: replaced, not damaged
            raise
        # Checked again once open: a shard opened from a dataset swapped in meanwhile is never read.
        try:
            self._check_not_replaced()
        except BaseException:
            shard.close()
            raise
        self._open[k] = shard
        while len(self._open) > MAX_OPEN_SHARDS:
            _, old = self._open.popitem(last=False)
            old.close()
        return shard

    @contextlib.contextmanager
    def _replaced_not_damaged(self) -> Iterator[None]:
        """A shard that reads by path (disk) finds its files gone once ``w`` replaced the dataset: say so."""
        try:
            yield
        except CorruptStoreError:
            self._check_not_replaced()
            raise

    def __getitem__(self, index: int | slice) -> Any:
        with self._replaced_not_damaged():
            return super().__getitem__(index)

    def read_many(self, indices: Iterable[int] | None = None) -> np.ndarray | list[np.ndarray]:
        with self._replaced_not_damaged():
            return super().read_many(indices)

    def _open_shard(self, k: int) -> Store:
        """Shard ``k`` opened for reading and checked against its manifest entry (CorruptStoreError if not)."""
        entry = self._entries[k]
        path = self.path / entry["name"]  # a Path, or a URL for a remote dataset
        where = f"{self.path}: shard {entry['name']}"
        found = self._find_shard(path, where)
        if found is None:
            raise CorruptStoreError(f"{where} named by the manifest is missing; the dataset is incomplete "
                                    "(restore the shard, or convert the dataset again)")
        if not found:
            raise CorruptStoreError(f"{where} is not a {self.name} store as the manifest says")
        try:
            shard = self._inner_cls(path, "r", None, None, self._inner_options())
        except CorruptStoreError as exc:
            raise CorruptStoreError(f"{where} is damaged: {exc}") from None
        except transport.RemoteAccessError:
            raise  # the server or the credentials failed, not the shard
        except ImgbenchError as exc:
            raise CorruptStoreError(f"{where} cannot be opened: {exc}") from None
        try:
            self._check_shard(k, shard, where)
        except BaseException:
            shard.close()
            raise
        return shard

    def _check_shard(self, k: int, shard: Store, where: str) -> None:
        """The shard must be what the manifest says: count, compression, labels and checksum digests."""
        entry = self._entries[k]
        if len(shard) != entry["count"]:
            raise CorruptStoreError(f"{where} holds {len(shard)} images; the manifest says {entry['count']}")
        if shard.compression != self.compression:
            raise CorruptStoreError(f"{where} is compressed with {shard.compression!r}, not {self.compression!r}")
        labels = shard.labels
        if entry["count"] and (labels is not None) != bool(self._labelled):
            raise CorruptStoreError(f"{where} is {'' if labels is not None else 'un'}labelled, unlike its dataset")
        if labels is not None and entry["labels"] is not None and digest(labels, "<i8") != entry["labels"]:
            raise CorruptStoreError(f"{where}: its labels do not match the manifest's summary (damaged labels)")
        sums = shard.checksums if self._checksummed else None
        if self._checksummed and entry["count"]:
            if sums is None:
                raise CorruptStoreError(f"{where} has no checksums; the manifest says it has")
            if digest(sums, "<u8") != entry["checksums"]:
                raise CorruptStoreError(f"{where}: its checksums do not match the manifest's summary (damaged)")
        self._sums[k], self._labs[k] = sums, labels

    def _locate(self, idx: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._ends, idx, side="right")

    def _get(self, index: int) -> np.ndarray:
        k = int(self._locate(np.int64(index)))
        return self._reader_shard(k)[index - int(self._starts[k])]

    def _groups(self, idx: np.ndarray) -> Iterable[tuple[int, np.ndarray]]:
        """``(shard, positions in idx)`` for every shard ``idx`` touches, in shard order."""
        shard_of = self._locate(idx)
        order = np.argsort(shard_of, kind="stable")
        cuts = np.flatnonzero(np.diff(shard_of[order])) + 1
        for pos in np.split(order, cuts):
            yield int(shard_of[pos[0]]), pos

    def _get_many(self, indices: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """One read per shard touched, each written into the output as it arrives (the output plus one
        shard's part in memory, not every part and then a copy of them all)."""
        idx = np.asarray(indices, np.int64)
        groups = list(self._groups(idx))
        if len(groups) == 1:
            k, pos = groups[0]
            return self._reader_shard(k).read_many(idx[pos] - self._starts[k])
        out: np.ndarray | None = None
        result: list[Any] | None = None
        done: list[np.ndarray] = []  # positions already in ``out``
        for k, pos in groups:
            part = self._reader_shard(k).read_many(idx[pos] - self._starts[k])
            if result is None and isinstance(part, np.ndarray) and (
                    out is None or (part.shape[1:] == out.shape[1:] and part.dtype == out.dtype)):
                if out is None:
                    out = np.empty((len(idx), *part.shape[1:]), part.dtype)
                out[pos] = part
                done.append(pos)
            else:
                if result is None:  # shapes differ: a list, its first images views of ``out``
                    result = [None] * len(idx)
                    for p in (np.concatenate(done).tolist() if done else []):
                        result[p] = out[p]
                for p, image in zip(pos.tolist(), part):
                    result[p] = image
            del part
        return out if result is None else stack_if_uniform(result)

    def _get_all(self) -> np.ndarray | list[np.ndarray]:
        out: np.ndarray | None = None
        items: list[np.ndarray] | None = None
        filled = 0
        for k, entry in enumerate(self._entries):
            if not entry["count"]:
                continue
            part = self._reader_shard(k).read_many()
            if items is None and isinstance(part, np.ndarray) and (
                    out is None or (part.shape[1:] == out.shape[1:] and part.dtype == out.dtype)):
                if out is None:
                    out = np.empty((self._count, *part.shape[1:]), part.dtype)
                out[filled:filled + len(part)] = part
            else:
                if items is None:
                    items = list(out[:filled]) if out is not None else []
                items.extend(part)
            filled += len(part)
        return items if items is not None else (out if out is not None else [])

    def _shard_arrays(self, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if k not in self._sums:
            self._reader_shard(k)
        return self._sums[k], self._labs[k]

    def _get_labels(self) -> np.ndarray | None:
        parts = [self._shard_arrays(k)[1] if e["count"] else np.zeros(0, np.int64)
                 for k, e in enumerate(self._entries)]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)

    def _get_checksums(self) -> np.ndarray | None:
        parts = [self._shard_arrays(k)[0] if e["count"] else np.zeros(0, np.uint64)
                 for k, e in enumerate(self._entries)]
        return np.concatenate(parts).astype(np.uint64, copy=False) if parts else np.zeros(0, np.uint64)

    def _verify(self, images: Any, indices: Any) -> None:
        """Check images against their shard's checksums (read per shard; no whole-dataset arrays)."""
        if not self._checksummed:
            return
        idx = np.asarray(indices, np.int64)
        for k, pos in self._groups(idx):
            sums, labels = self._shard_arrays(k)
            local = idx[pos] - self._starts[k]
            subset = images[pos] if isinstance(images, np.ndarray) else [images[p] for p in pos.tolist()]
            checksum.check(subset, sums[local], idx[pos], f"{self.path}: ",
                           None if labels is None else labels[local])

    def __repr__(self) -> str:
        return (f"<imgbench sharded {getattr(self, 'name', '?')} dataset {str(getattr(self, 'path', '?'))!r} "
                f"shards={len(getattr(self, '_entries', []))} images={getattr(self, '_count', '?')}>")

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["limit"] = self._limit
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._limit = state.get("limit")
        super().__setstate__(state)
