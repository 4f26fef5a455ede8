"""Checks of a tar store's commit record and index before anything they say is used.

A hostile store may name shards outside the directory, sizes it does not have,
or images that would decode to far more bytes than their members hold: every
entry is checked (vectorised over the index) against the commit record and the
decompression limits, so a crafted store cannot make a reader read outside it
or allocate without bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core import limits
from imgbench.core.errors import CorruptStoreError
from imgbench.core.images import DTYPE_IDS, ITEMSIZE_BY_ID
from imgbench.storage.tar.layout import (
    CHANNELS,
    COMMIT,
    DTYPE,
    HEIGHT,
    INDEX,
    INDEX_COLUMNS,
    OFFSET,
    SHARD,
    SHARD_RE,
    SIZE,
    WIDTH,
)
from imgbench.storage.tar.members import BLOCK, EOA


def check_shards(shards: Any, path: Path) -> list[dict[str, Any]]:
    """The commit record's shard list of the store at ``path`` as ``[{"name", "size", "samples"}]``."""
    if not isinstance(shards, list):
        raise CorruptStoreError(f"{path}/{COMMIT} has no shard list")
    out = []
    for k, entry in enumerate(shards):
        if not isinstance(entry, dict):
            raise CorruptStoreError(f"{path}/{COMMIT}: shard entry {k} is not a mapping")
        name, size = entry.get("name"), entry.get("size")
        # Names are matched exactly: no directories, no '..', no absolute paths.
        if not isinstance(name, str) or not SHARD_RE.fullmatch(name):
            raise CorruptStoreError(f"{path}/{COMMIT}: shard name {name!r} is not one imgbench writes")
        if isinstance(size, bool) or not isinstance(size, int) or not 2 * BLOCK <= size < 2**62 or size % BLOCK:
            raise CorruptStoreError(f"{path}/{COMMIT}: shard {name} has an impossible size {size!r}")
        out.append({"name": name, "size": size, "samples": entry.get("samples")})
    return out


def check_index_columns(index: Any, path: Path) -> None:
    """The commit record describes the index this code reads."""
    columns = index.get("columns") if isinstance(index, dict) else None
    if columns != list(INDEX_COLUMNS) or index.get("dtype") != "<i8":
        raise CorruptStoreError(
            f"{path}/{COMMIT} describes index columns {columns!r}; this imgbench reads "
            f"{list(INDEX_COLUMNS)} (<i8). Damaged, or written by a development version: rewrite it"
        )


def check_index(rows: np.ndarray, shards: list[dict[str, Any]], compression: Any, path: Path) -> None:
    """Vectorised bounds checks: every image lies inside its shard's committed data, with a plausible shape."""
    if not len(rows):
        return
    sizes = np.array([s["size"] for s in shards] or [0], np.int64)
    shard, off, size = rows[:, SHARD], rows[:, OFFSET], rows[:, SIZE]
    bad = (shard < 0) | (shard >= len(shards))
    limit = sizes[np.where(bad, 0, shard)] - len(EOA)
    h, w, c, dt = rows[:, HEIGHT], rows[:, WIDTH], rows[:, CHANNELS], rows[:, DTYPE]
    itemsize = ITEMSIZE_BY_ID[np.clip(dt, 0, 255)]
    bad |= (off < BLOCK) | (off % BLOCK != 0) | (size < 1) | (size > limit - off)
    bad |= (h < 1) | (w < 1) | (h > 2**31) | (w > 2**31) | (c < 0) | (c > 4) | (dt < 1) | (dt > 255) | (itemsize == 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CorruptStoreError(
            f"{path}/{INDEX} is inconsistent at image {i}: {dict(zip(INDEX_COLUMNS, rows[i].tolist()))} "
            "does not fit the shards in the commit record"
        )
    nbytes = h.astype(np.float64) * w * np.maximum(c, 1) * itemsize
    if compression == "png":
        bad = limits.PNG.exceeded(nbytes, size.astype(np.float64)) | (dt > DTYPE_IDS[np.dtype("uint16")])
    elif compression == "none":
        bad = nbytes > size
    else:  # the image codecs: LERC stores a constant image of any size in ~70 bytes, so no ratio bounds
        # them; each decoder compares its codestream header with this index before it allocates
        bad = np.zeros(len(size), bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CorruptStoreError(
            f"{path}/{INDEX}: image {i} claims {int(nbytes[i])} decoded bytes from a {int(size[i])}-byte "
            f"{compression} member: damaged, or a decompression bomb"
        )
