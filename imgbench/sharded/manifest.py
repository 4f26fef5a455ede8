"""The sharded-dataset manifest: format constants, checks, reading, building and writing.

``imgbench-shards.json`` is the dataset's commit record (docs/formats/sharded.md):
it names the shards in order with their image counts and digests. Everything that
reads or writes it goes through here, local or remote: :func:`parse_manifest` takes
the bytes however they were fetched, so the checks are the same wherever the
dataset lives.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import atomic, checksum, ownfiles
from imgbench.core.errors import (
    CorruptStoreError,
    FormatVersionError,
    ImgbenchError,
    InvalidImageError,
    UnsupportedError,
)
from imgbench.core.transport import URL
from imgbench.storage import registry

#: the manifest's file name inside a dataset directory
MANIFEST = "imgbench-shards.json"
#: ``format`` field of the manifest
FORMAT = "imgbench-shards"
#: manifest layout version this code writes; it reads this and older
VERSION = 1
#: a manifest larger than this is refused before it is parsed (~100 bytes per shard)
MAX_MANIFEST_BYTES = 256 << 20
#: no count may exceed this (cumulative counts are int64)
MAX_COUNT = 1 << 53
_HEX16 = frozenset("0123456789abcdef")


def detect(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a manifest file (cheap; nothing is parsed)."""
    path = Path(path)
    try:
        return path.is_dir() and stat.S_ISREG(os.lstat(path / MANIFEST).st_mode)
    except OSError:
        return False


def digest(array: np.ndarray, dtype: str) -> str:
    """xxh3-64 (hex) of an array's little-endian bytes: the manifest's per-shard summary."""
    import xxhash

    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(np.asarray(array).astype(dtype, copy=False)).tobytes())


def check_name(name: Any, where: Path | URL) -> str:
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
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


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
        name = check_name(entry.get("name"), where)
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
        fd, size = ownfiles.open_own(target)
    except FileNotFoundError:
        raise CorruptStoreError(f"{path} has no {MANIFEST}; it is not a sharded dataset (or its writer "
                                "did not finish)") from None
    except IsADirectoryError:
        raise CorruptStoreError(f"{target} is not a regular file") from None
    try:
        if size > MAX_MANIFEST_BYTES:
            raise CorruptStoreError(f"{target} is {size} bytes, more than any manifest imgbench writes")
        raw = ownfiles.read_fd(fd, MAX_MANIFEST_BYTES + 1)
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
    path = Path(directory) / check_name(name, Path(directory))
    cls = registry.detect(path)
    with cls(path, "r", None, None, {}) as shard:
        labels = shard.labels
        sums = shard.checksums
        return {
            "name": name,
            "count": len(shard),
            "checksums": None if sums is None else digest(sums, "<u8"),
            "labels": None if labels is None else digest(labels, "<i8"),
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
