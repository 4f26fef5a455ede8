"""Sharded datasets: a directory of shard stores (any backend) plus a JSON manifest.

A dataset too big for one store, or written by many machines at once, is a
directory holding shard stores of one backend and ``imgbench-shards.json``,
which names the shards in order with their image counts and a checksum
summary. ``imgbench.open(path)`` reads it through the usual Store contract:
image ``i`` is found by a binary search over the manifest's cumulative counts
(no scan), and its shard is opened on first use.

Why a manifest written last: shards are ordinary stores, each published
atomically, so a shard either exists whole or not at all; the manifest is the
commit record that says which shards make the dataset. ``w``/``x`` build the
whole directory under a hidden temporary name and rename it into place on a
clean close, so a killed writer leaves the old dataset or nothing. ``a`` adds
new shards (existing shards are never modified) and then replaces the manifest
atomically under the writer lock; shards the manifest does not name are
leftovers of an interrupted append and are ignored by readers.

The building blocks are plain functions shared by the sequential writer here
and by ``imgbench convert --workers`` (one Dask task per shard):
:func:`plan` (shard boundaries, from the item sizes and the limit only),
:func:`shard_name`, :func:`write_shard` (atomic: a retried task replaces the
same shard, never duplicates images) and :func:`finish` (the manifest).

Uploaded to an object store, a dataset reads from its URL
(``imgbench.open("s3://bucket/dataset")``) through :class:`RemoteShardedStore`:
the same manifest checks (:func:`parse_manifest` takes the bytes however they
were fetched) and the same shard checks, each shard opened at ``URL/name`` by
its backend's remote reader (zarr, tar, hdf5 shards; lmdb, npy and disk
shards are refused as those stores are).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, checksum, transport
from imgbench.core.errors import (
    CorruptStoreError,
    FormatVersionError,
    ImgbenchError,
    InvalidImageError,
    UnsupportedError,
)
from imgbench.core.store import Attrs, Store, claim_new, stack_if_uniform
from imgbench.core.transport import URL, RemoteStore
from imgbench.storage import registry

#: the manifest's file name inside a dataset directory
MANIFEST = "imgbench-shards.json"
#: ``format`` field of the manifest
FORMAT = "imgbench-shards"
#: manifest layout version this code writes; it reads this and older
VERSION = 1
#: the options of :func:`imgbench.open` that make (or extend) a sharded dataset
SHARD_OPTIONS = ("images_per_shard", "bytes_per_shard")
#: a manifest larger than this is refused before it is parsed (~100 bytes per shard)
MAX_MANIFEST_BYTES = 256 << 20
#: shards a reader keeps open at once (file descriptors and maps); least recently used are closed
MAX_OPEN_SHARDS = 64
#: no count may exceed this (cumulative counts are int64)
_MAX_COUNT = 1 << 53
_HEX16 = frozenset("0123456789abcdef")


# ----------------------------------------------------------------- helpers
def detect(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a manifest file (cheap; nothing is parsed)."""
    path = Path(path)
    try:
        return path.is_dir() and stat.S_ISREG(os.lstat(path / MANIFEST).st_mode)
    except OSError:
        return False


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


def shard_name(index: int, backend: str) -> str:
    """Name of shard ``index``: ``shard-00000`` plus the backend's usual suffix (``.lmdb``, ``.h5``, ``.zarr``)."""
    suffixes = registry.suffixes(backend)
    return f"shard-{index:05d}{suffixes[0] if suffixes else ''}"


def check_limit(images_per_shard: Any = None, bytes_per_shard: Any = None, shards: Any = None) -> dict[str, int] | None:
    """Validate a shard limit; at most one may be given. Returns ``{"images": n}``, ``{"bytes": n}``,
    ``{"shards": n}`` or None."""
    given = {k: v for k, v in (("images", images_per_shard), ("bytes", bytes_per_shard), ("shards", shards))
             if v is not None}
    if len(given) > 1:
        raise UnsupportedError(
            "give one shard limit: images_per_shard, bytes_per_shard or a number of shards, not "
            + " and ".join(given)
        )
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value < _MAX_COUNT:
            raise UnsupportedError(f"the shard limit ({key}) must be a positive integer, got {value!r}")
        return {key: int(value)}
    return None


def plan(
    n: int,
    sizes: Sequence[int] | np.ndarray | None = None,
    *,
    images_per_shard: int | None = None,
    bytes_per_shard: int | None = None,
    shards: int | None = None,
) -> list[tuple[int, int]]:
    """Split items ``0..n-1`` into consecutive shards; returns ``(start, stop)`` per shard.

    The boundaries depend only on ``n``, ``sizes`` (bytes per item, needed for
    ``bytes_per_shard``) and the limit, never on how many workers write them.
    ``bytes_per_shard``: a shard ends before the item that would take it past
    the limit, and holds at least one item. ``shards``: that many shards of
    near-equal item counts (fewer when there are fewer items). No limit: one shard.
    """
    limit = check_limit(images_per_shard, bytes_per_shard, shards)
    if n <= 0:
        return []
    if limit is None:
        return [(0, n)]
    if "images" in limit:
        step = limit["images"]
        return [(a, min(n, a + step)) for a in range(0, n, step)]
    if "shards" in limit:
        k = min(limit["shards"], n)
        bounds = [i * n // k for i in range(k + 1)]
        return list(zip(bounds[:-1], bounds[1:]))
    if sizes is None or len(sizes) != n:
        raise ValueError("bytes_per_shard needs the size of every item")
    cap = limit["bytes"]
    out, start, total = [], 0, 0
    for i, size in enumerate(np.asarray(sizes, np.int64).tolist()):
        if i > start and total + size > cap:
            out.append((start, i))
            start, total = i, 0
        total += size
    out.append((start, n))
    return out


def _digest(array: np.ndarray, dtype: str) -> str:
    """xxh3-64 (hex) of an array's little-endian bytes: the manifest's per-shard summary."""
    import xxhash

    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(np.asarray(array).astype(dtype, copy=False)).tobytes())


def _check_name(name: Any, where: Path | URL) -> str:
    """A shard name must be a plain entry of the dataset directory: no path, no parent, not hidden."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 255
        or name in (".", "..", MANIFEST)
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
    ):
        raise CorruptStoreError(
            f"{where}: manifest names a shard {name!r}; a shard must be a plain name inside the dataset "
            "directory (no '/', '..', absolute path or hidden name). The manifest is damaged or hostile"
        )
    return name


def _count_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_COUNT


def _hex_ok(value: Any) -> bool:
    return value is None or (isinstance(value, str) and len(value) == 16 and set(value) <= _HEX16)


def validate_manifest(manifest: Any, where: Path | URL) -> dict[str, Any]:
    """Check every field of a parsed manifest; CorruptStoreError (or FormatVersionError) naming the first problem."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptStoreError(f"{where / MANIFEST} is not an imgbench sharded-dataset manifest")
    version = manifest.get("version")
    if not _count_ok(version) or version < 1:
        raise CorruptStoreError(f"{where / MANIFEST} has no valid format version ({version!r})")
    if version > VERSION:
        raise FormatVersionError(
            f"{where} was written in imgbench sharded-dataset format version {version}, newer than this imgbench "
            f"reads ({VERSION}); upgrade: pip install -U imgbench"
        )
    backend = manifest.get("backend")
    if backend not in registry.backends():
        raise CorruptStoreError(f"{where / MANIFEST} names an unknown shard backend {backend!r}")
    if manifest.get("compression") not in registry.get(backend).compressions:
        raise CorruptStoreError(
            f"{where / MANIFEST} names compression {manifest.get('compression')!r}, unknown to backend {backend!r}"
        )
    level = manifest.get("level")
    if level is not None and not _count_ok(level):
        raise CorruptStoreError(f"{where / MANIFEST} has an invalid compression level {level!r}")
    if manifest.get("labels") not in (True, False):
        raise CorruptStoreError(f"{where / MANIFEST}: the 'labels' flag is missing")
    if manifest.get("checksum") not in (None, checksum.ALGORITHM):
        raise CorruptStoreError(f"{where / MANIFEST} names an unknown checksum {manifest.get('checksum')!r}")
    if not isinstance(manifest.get("attrs", {}), dict):
        raise CorruptStoreError(f"{where / MANIFEST}: attrs are not a mapping")
    limit = manifest.get("limit")
    if limit is not None and not (
        isinstance(limit, dict) and len(limit) == 1 and set(limit) <= {"images", "bytes", "shards"}
        and _count_ok(next(iter(limit.values()))) and next(iter(limit.values())) > 0
    ):
        raise CorruptStoreError(f"{where / MANIFEST} has an invalid shard limit {limit!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise CorruptStoreError(f"{where / MANIFEST} has no list of shards")
    names: set[str] = set()
    total = 0
    for k, entry in enumerate(shards):
        if not isinstance(entry, dict):
            raise CorruptStoreError(f"{where / MANIFEST}: shard entry {k} is not an object")
        name = _check_name(entry.get("name"), where)
        if name in names:
            raise CorruptStoreError(f"{where / MANIFEST} names shard {name!r} twice")
        names.add(name)
        if not _count_ok(entry.get("count")):
            raise CorruptStoreError(f"{where / MANIFEST}: shard {name!r} has an invalid image count {entry.get('count')!r}")
        if not _hex_ok(entry.get("checksums")) or not _hex_ok(entry.get("labels")):
            raise CorruptStoreError(f"{where / MANIFEST}: shard {name!r} has an invalid checksum summary")
        if manifest["checksum"] is not None and entry["count"] and entry.get("checksums") is None:
            raise CorruptStoreError(f"{where / MANIFEST}: shard {name!r} has no checksum summary")
        if manifest["labels"] and entry["count"] and entry.get("labels") is None:
            raise CorruptStoreError(f"{where / MANIFEST}: shard {name!r} has no label summary in a labelled dataset")
        total += entry["count"]
    count = manifest.get("count")
    if not _count_ok(count) or count != total:
        raise CorruptStoreError(
            f"{where / MANIFEST} says the dataset holds {count!r} images but its shards add up to {total}"
        )
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and validate ``path/imgbench-shards.json``; never follows a symlink or blocks on a FIFO."""
    target = path / MANIFEST
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CorruptStoreError(f"{path} has no {MANIFEST}; it is not a sharded dataset (or its writer "
                                "did not finish)") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EOPNOTSUPP):
            raise CorruptStoreError(f"{target} is not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptStoreError(f"{target} is not a regular file")
        if st.st_size > MAX_MANIFEST_BYTES:
            raise CorruptStoreError(f"{target} is {st.st_size} bytes, more than any manifest imgbench writes")
        with open(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    return parse_manifest(raw, path)


def parse_manifest(raw: bytes, where: Path | URL) -> dict[str, Any]:
    """Parse and validate the bytes of ``where/imgbench-shards.json``, however they were fetched.

    One parser for a local file and an object at ``s3://.../imgbench-shards.json``:
    the same size bound, JSON errors and field checks wherever the dataset lives.
    Callers read at most ``MAX_MANIFEST_BYTES + 1`` bytes.
    """
    target = where / MANIFEST
    if len(raw) > MAX_MANIFEST_BYTES:
        raise CorruptStoreError(
            f"{target} is over {MAX_MANIFEST_BYTES} bytes, more than any manifest imgbench writes"
        )
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptStoreError(f"{target} is not valid JSON ({str(exc)[:200]})") from None
    return validate_manifest(manifest, where)


def _dump(manifest: dict[str, Any]) -> bytes:
    """The manifest as JSON, one line per shard (readable, and small for many shards)."""
    head, _, tail = json.dumps({**manifest, "shards": []}, indent=1, allow_nan=False).rpartition('"shards": []')
    rows = ",\n".join("  " + json.dumps(e, allow_nan=False) for e in manifest["shards"])
    return (head + ('"shards": [\n' + rows + "\n ]" if rows else '"shards": []') + tail + "\n").encode()


def describe_shard(directory: str | os.PathLike, name: str) -> dict[str, Any]:
    """Open a finished shard and summarise it for the manifest: count, checksum and label digests."""
    path = Path(directory) / _check_name(name, Path(directory))
    cls = registry.detect(path)
    with cls(path, "r", None, None, {}) as shard:
        labels = shard.labels
        sums = shard.checksums
        return {
            "name": name,
            "count": len(shard),
            "checksums": None if sums is None else _digest(sums, "<u8"),
            "labels": None if labels is None else _digest(labels, "<i8"),
            # not stored per entry; used by build_manifest to check the shards agree
            "_backend": shard.backend,
            "_compression": shard.compression,
            "_level": shard.level,
        }


def build_manifest(
    entries: Sequence[dict[str, Any]],
    *,
    backend: str,
    compression: str,
    level: int | None,
    attrs: Mapping[str, Any] | None = None,
    limit: Mapping[str, int] | None = None,
    where: Path | str = "dataset",
) -> dict[str, Any]:
    """The manifest for shards summarised by :func:`describe_shard`, checking that they agree."""
    shards = []
    labelled: bool | None = None
    checksummed = True
    for entry in entries:
        if "_backend" in entry and (entry["_backend"], entry["_compression"], entry["_level"]) != (
                backend, compression, level):
            raise ImgbenchError(
                f"{where}: shard {entry['name']} is a {entry['_backend']}/{entry['_compression']} (level "
                f"{entry['_level']}) store; every shard of a dataset must be {backend}/{compression} (level {level})"
            )
        if entry["count"]:
            has = entry["labels"] is not None
            if labelled is not None and has != labelled:
                raise InvalidImageError(
                    f"{where}: shard {entry['name']} is {'' if has else 'un'}labelled but earlier shards are not: "
                    "a dataset labels every image or none"
                )
            labelled = has
            checksummed = checksummed and entry["checksums"] is not None
        shards.append({k: entry[k] for k in ("name", "count", "checksums", "labels")})
    try:
        attrs = json.loads(json.dumps(dict(attrs or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UnsupportedError(f"dataset attrs must be JSON-serialisable: {exc}") from None
    return {
        "format": FORMAT,
        "version": VERSION,
        "backend": backend,
        "compression": compression,
        "level": level,
        "count": sum(e["count"] for e in shards),
        "labels": bool(labelled),
        "checksum": checksum.ALGORITHM if checksummed else None,
        "limit": dict(limit) if limit else None,
        "attrs": attrs,
        "shards": shards,
    }


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any], sync: bool = True) -> None:
    """Validate ``manifest`` and replace ``directory/imgbench-shards.json`` atomically."""
    directory = Path(directory)
    validate_manifest(json.loads(_dump(manifest)), directory)
    atomic.write_file(directory / MANIFEST, _dump(manifest), sync=sync)


def write_shard(
    directory: str | os.PathLike,
    name: str,
    items: Iterable[tuple[np.ndarray, int | None]],
    *,
    backend: str,
    compression: str | None = None,
    level: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> int:
    """Write ``(image, label)`` items as the shard store ``directory/name``; return its image count.

    The shard is written with mode ``w``: it appears whole on success, replaces
    an earlier attempt at the same shard (a retried task never duplicates
    images), and a failure leaves no shard. No items: no shard is written (0).
    """
    directory = Path(directory)
    if not directory.is_dir():
        # The conversion this shard belongs to was abandoned (its temporary directory is gone).
        raise ImgbenchError(f"{directory} does not exist: the dataset this shard belongs to is no longer being written")
    it = iter(items)
    first = next(it, None)
    if first is None:
        return 0
    cls = registry.get(backend)
    count = 0
    with cls(directory / _check_name(name, directory), "w", compression, level, dict(options or {})) as shard:
        shard.append(*first)
        count = 1
        for image, label in it:
            shard.append(image, label)
            count += 1
    return count


def finish(
    directory: str | os.PathLike,
    names: Sequence[str],
    *,
    backend: str,
    compression: str | None = None,
    level: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    limit: Mapping[str, int] | None = None,
    sync: bool = True,
) -> dict[str, Any]:
    """Summarise the finished shards ``names`` (in dataset order) and write the manifest, last.

    Reads each shard's own count, labels and checksums (not what the writers
    said), checks the shards agree on backend, compression and labelling, and
    returns the manifest written.
    """
    directory = Path(directory)
    entries = [describe_shard(directory, name) for name in names]
    cls = registry.get(backend)
    if entries:
        compression, level = entries[0]["_compression"], entries[0]["_level"]
    elif compression is None:
        compression = cls.compressions[0]
    manifest = build_manifest(entries, backend=backend, compression=compression, level=level, attrs=attrs,
                              limit=limit, where=directory)
    write_manifest(directory, manifest, sync=sync)
    return manifest


def prepare(path: Path, mode: str) -> Path:
    """Check that a dataset may be created at ``path`` (mode ``x`` or ``w``) and make its hidden temporary directory.

    That ``w`` replaces only an imgbench store or an empty directory is the caller's check
    (:func:`imgbench.api.check_replaceable`).
    """
    tmp = claim_new(path, mode)
    tmp.mkdir()
    return tmp


# ------------------------------------------------------------------ the store
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
            self._preread = self._read_manifest()
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

    def _read_manifest(self) -> dict[str, Any]:
        """The validated manifest at ``self.path`` (local file here; an object for remote readers)."""
        return read_manifest(self.path)

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

    @property
    def shards(self) -> int:
        """Number of shards named by the manifest."""
        return len(self._entries)

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
        return meta if meta is not None else self._read_manifest()

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
        self._open[k] = shard
        while len(self._open) > MAX_OPEN_SHARDS:
            _, old = self._open.popitem(last=False)
            old.close()
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
        if labels is not None and entry["labels"] is not None and _digest(labels, "<i8") != entry["labels"]:
            raise CorruptStoreError(f"{where}: its labels do not match the manifest's summary (damaged labels)")
        sums = shard.checksums if self._checksummed else None
        if self._checksummed and entry["count"]:
            if sums is None:
                raise CorruptStoreError(f"{where} has no checksums; the manifest says it has")
            if _digest(sums, "<u8") != entry["checksums"]:
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
        idx = np.asarray(indices, np.int64)
        parts = [(pos, self._reader_shard(k).read_many(idx[pos] - self._starts[k])) for k, pos in self._groups(idx)]
        if len(parts) == 1:
            return parts[0][1]
        first = parts[0][1]
        if all(isinstance(p, np.ndarray) and p.shape[1:] == first.shape[1:] and p.dtype == first.dtype
               for _, p in parts):
            out = np.empty((len(idx), *first.shape[1:]), first.dtype)
            for pos, part in parts:
                out[pos] = part
            return out
        result: list[Any] = [None] * len(idx)
        for pos, part in parts:
            for p, image in zip(pos.tolist(), part):
                result[p] = image
        return stack_if_uniform(result)

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


class RemoteShardedStore(RemoteStore, ShardedStore):
    """A sharded dataset read from a URL (``s3://bucket/dataset``): the local reader with remote I/O.

    The manifest is fetched as one object and checked by :func:`parse_manifest`;
    each shard is the remote reader of its backend (zarr, tar, hdf5), opened
    on first use at ``URL/name`` with the dataset's ``storage_options`` and
    checked against the manifest like a local shard (count, compression,
    labels, checksum digests). Datasets of lmdb, npy or disk shards are refused
    when opened, with the reason their backend gives.
    """

    def __init__(self, path: URL, mode: str, compression: str | None, level: int | None, options: dict,
                 backend: str | None = None):
        # The manifest (read first, to learn the shards' backend) needs the endpoint and credentials.
        self.options = {"storage_options": options.get("storage_options")}
        super().__init__(path, mode, compression, level, options, backend=backend)

    def _read_manifest(self) -> dict[str, Any]:
        fs, root = self._remote_fs()
        key = self._remote_key(root, MANIFEST)
        raw = self._remote_call(MANIFEST, lambda: fs.cat_file(key, start=0, end=MAX_MANIFEST_BYTES + 1))
        return parse_manifest(raw, self.path)

    def _shard_class(self, inner: str) -> type[Store]:
        try:
            return super()._shard_class(inner).remote_reader()
        except UnsupportedError as exc:
            raise UnsupportedError(f"{self.path} is a sharded dataset of {inner} shards, and {exc}") from None

    def _find_shard(self, path: URL, where: str) -> bool | None:
        try:
            probe = transport.probe(path, self.options["storage_options"])
        except FileNotFoundError:
            return None
        return self._remote_call(f"shard {path.name}", lambda: self._inner_cls.detect_remote(probe))


def detect_remote(probe: transport.Probe) -> bool:
    """True when the URL ``probe`` describes is a sharded dataset (its listing names the manifest)."""
    return probe.names is not None and MANIFEST in probe.names


def open_dataset(
    path: Path | URL,
    mode: str,
    *,
    backend: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> ShardedStore:
    """What :func:`imgbench.open` calls for a sharded dataset (see :func:`wanted`), and
    :func:`imgbench.api.open_url` for one at a URL (read-only; ``options`` may hold ``storage_options``)."""
    cls = RemoteShardedStore if isinstance(path, URL) else ShardedStore
    return cls(path, mode, compression, level, dict(options or {}), backend=backend)
