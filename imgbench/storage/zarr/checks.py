"""Checks of what a zarr store's metadata claims, before zarr or the reader acts on it.

The commit record (``zarr.json``'s attribute ``imgbench``) and every array's
metadata come from the store, so from anyone: each is refused unless it is what
imgbench writes (a zarr v3 group; arrays sharded with imgbench's codecs only, no
pickle, no third-party codec; the shapes, dtypes and chunk grid the record implies).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.errors import CorruptStoreError
from imgbench.core.images import dtype_from_code
from imgbench.storage.zarr.layout import (
    ALLOWED_CODECS,
    FIXED,
    MAX_INDEX_ENTRIES,
    MAX_RECORD_BYTES,
    RECORD_KEY,
    codec_names,
)


def parse_record(raw: bytes | None, target: Path) -> dict[str, Any]:
    """The commit record in ``raw`` (the group's ``zarr.json``, None when there is none)."""
    if raw is None:
        raise CorruptStoreError(f"{target} has no {RECORD_KEY}; it is not a zarr store")
    if len(raw) > MAX_RECORD_BYTES:
        raise CorruptStoreError(f"{target / RECORD_KEY} is implausibly large")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptStoreError(f"{target / RECORD_KEY} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise CorruptStoreError(f"{target / RECORD_KEY} is not zarr v3 group metadata")
    attributes = doc.get("attributes")
    meta = attributes.get("imgbench") if isinstance(attributes, dict) else None
    if not isinstance(meta, dict):
        raise CorruptStoreError(f"{target} is a zarr group without imgbench metadata (attribute 'imgbench')")
    return meta


def check_record(meta: dict[str, Any], target: Path) -> tuple[tuple[tuple[int, ...], np.dtype] | None, int]:
    """(shape and dtype of the uniform images or None, their count) from a commit record past ``check_meta``."""
    count = meta["count"]
    ucount = meta.get("uniform_count")
    if isinstance(ucount, bool) or not isinstance(ucount, int) or not 0 <= ucount <= count:
        raise CorruptStoreError(f"{target}: commit record has an invalid uniform_count ({ucount!r})")
    image = meta.get("image")
    uniform = None
    if image is not None:
        try:
            shape = tuple(int(d) for d in image["shape"])
            dtype = dtype_from_code(image["dtype"])
        except (TypeError, KeyError, ValueError) as exc:
            raise CorruptStoreError(f"{target}: commit record has a malformed image entry ({exc})") from None
        if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] > 4):
            raise CorruptStoreError(f"{target}: commit record lists an impossible image shape {shape}")
        uniform = (shape, dtype)
    elif ucount:
        raise CorruptStoreError(f"{target}: commit record counts uniform images but gives no shape")
    return uniform, ucount


def check_array(arr: Any, name: str, uniform: tuple[tuple[int, ...], np.dtype] | None, target: Path) -> None:
    """Refuse array ``name`` unless its codecs, dtype, row shape and chunk grid are ones imgbench writes."""
    meta = arr.metadata.to_dict()
    names = set(codec_names(meta.get("codecs")))
    if not names <= ALLOWED_CODECS or "sharding_indexed" not in names or meta.get("storage_transformers"):
        raise CorruptStoreError(
            f"{target}: array {name!r} uses codecs {sorted(names)}; imgbench writes only "
            f"{sorted(ALLOWED_CODECS)} and runs nothing else"
        )
    if name == "images":
        shape, dtype = uniform
        expected_dtype, rest = dtype, shape
    else:
        expected_dtype, rest, _ = FIXED[name]
    if arr.ndim != 1 + len(rest) or tuple(arr.shape[1:]) != tuple(rest) or arr.dtype != expected_dtype:
        raise CorruptStoreError(
            f"{target}: array {name!r} is {arr.shape} {arr.dtype}, expected (n, {rest}) {expected_dtype}"
        )
    try:
        shard = tuple(arr.shards or ())
        chunk = tuple(arr.chunks)
    except Exception as exc:
        raise CorruptStoreError(f"{target}: array {name!r} has a malformed chunk grid ({exc})") from None
    if (
        len(shard) != arr.ndim
        or shard[1:] != tuple(rest)
        or chunk[1:] != tuple(rest)
        or min(chunk[0], shard[0]) < 1
        or shard[0] % chunk[0]
        or shard[0] // chunk[0] > MAX_INDEX_ENTRIES
    ):
        raise CorruptStoreError(f"{target}: array {name!r} has an unexpected chunk grid {chunk} / {shard}")
