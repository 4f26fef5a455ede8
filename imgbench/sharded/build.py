"""The building blocks of a sharded dataset, shared by the sequential writer and ``imgbench convert --workers``.

:func:`plan` (shard boundaries, from the item sizes and the limit only),
:func:`shard_name`, :func:`write_shard` (atomic: a retried task replaces the same
shard, never duplicates images), :func:`finish` (the manifest, written last) and
:func:`prepare` (the hidden temporary directory a new dataset is built in).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.errors import ImgbenchError, UnsupportedError
from imgbench.core.store import claim_new
from imgbench.sharded.manifest import MAX_COUNT, build_manifest, check_name, describe_shard, write_manifest
from imgbench.storage import registry


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
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value < MAX_COUNT:
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
    with cls(directory / check_name(name, directory), "w", compression, level, dict(options or {})) as shard:
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
