"""Names and numbers of the zarr layout: the commit record's key, the arrays, their grid and their codecs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from imgbench.core.images import DTYPE_CODES, DTYPE_IDS
from imgbench.core.levels import LevelRange

#: the group metadata, whose attribute ``imgbench`` is the commit record
RECORD_KEY = "zarr.json"
#: compression -> its levels (None: it takes none)
LEVELS: dict[str, LevelRange | None] = {"none": None, "zstd": LevelRange(1, 22, 3), "blosc": LevelRange(0, 9, 5)}
#: target raw bytes of one inner chunk and of one shard
CHUNK_BYTES = 128 << 10
SHARD_BYTES = 16 << 20
#: inner chunks per shard at most (each costs 16 bytes of shard index, read on every random access)
MAX_CHUNKS_PER_SHARD = 1024
#: largest chunks-per-shard accepted in metadata (the shard index is allocated from it)
MAX_INDEX_ENTRIES = 1 << 20
#: the per-image index arrays are always zstd: their padded last chunk then costs no disk
INDEX_ARRAYS = frozenset({"labels", "checksums", "offsets", "shapes", "dtypes"})
INDEX_LEVEL = 3
MAX_RECORD_BYTES = 64 << 20
MAX_ARRAY_JSON_BYTES = 1 << 20
ALLOWED_CODECS = frozenset({"sharding_indexed", "bytes", "crc32c", "zstd", "blosc"})
ARRAYS = ("images", "labels", "checksums", "data", "offsets", "shapes", "dtypes")
RAGGED = ("data", "offsets", "shapes", "dtypes")
#: (dtype, row shape) of the fixed arrays, and their rows per inner chunk
FIXED: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {
    "labels": (np.dtype("<i8"), (), 32768),
    "checksums": (np.dtype("<u8"), (), 32768),
    "offsets": (np.dtype("<i8"), (), 32768),
    "shapes": (np.dtype("<i8"), (3,), 8192),
    "dtypes": (np.dtype("u1"), (), 262144),
    "data": (np.dtype("u1"), (), CHUNK_BYTES),
}
DTYPE_IDS_JSON = {str(i): DTYPE_CODES[dt] for dt, i in DTYPE_IDS.items()}


def chunk_codecs(compression: str, level: int | None) -> list[Any]:
    """Bytes-to-bytes codecs of every inner chunk: the compressor, then a CRC-32C."""
    if compression == "zstd":
        return [ZstdCodec(level=level), Crc32cCodec()]
    if compression == "blosc":
        return [BloscCodec(cname="lz4", clevel=level), Crc32cCodec()]
    return [Crc32cCodec()]


def grid(row_bytes: int, chunk_rows: int | None = None, shard_rows: int | None = None) -> tuple[int, int]:
    """(rows per inner chunk, rows per shard): ~128 KiB chunks, ~16 MiB shards, shard a multiple of chunk."""
    auto_chunk = max(1, CHUNK_BYTES // max(1, row_bytes))
    if shard_rows is not None:
        chunk = chunk_rows or next(c for c in range(min(auto_chunk, shard_rows), 0, -1) if shard_rows % c == 0)
        return chunk, shard_rows
    chunk = chunk_rows or auto_chunk
    per_shard = max(1, min(MAX_CHUNKS_PER_SHARD, SHARD_BYTES // max(1, chunk * row_bytes)))
    return chunk, chunk * per_shard


def codec_names(codecs: Any) -> Iterator[str]:
    """The names of the codecs in array metadata ``codecs``, nested ones (inside sharding) included."""
    for codec in codecs if isinstance(codecs, (list, tuple)) else [codecs]:
        if not isinstance(codec, dict):
            yield repr(codec)
            continue
        yield str(codec.get("name"))
        config = codec.get("configuration") or {}
        if isinstance(config, dict):
            for inner in ("codecs", "index_codecs"):
                if inner in config:
                    yield from codec_names(config[inner])

