"""Names and numbers of the tar layout: the commit record, the index and its columns, shard names."""

from __future__ import annotations

import re

COMMIT = "imgbench-tar.json"
INDEX = "imgbench-tar.index"
#: the index's columns, each a little-endian int64, one row per image
INDEX_COLUMNS = ("shard", "offset", "size", "label", "height", "width", "channels", "dtype", "checksum")
SHARD, OFFSET, SIZE, LABEL, HEIGHT, WIDTH, CHANNELS, DTYPE, CHECKSUM = range(9)
NCOL = len(INDEX_COLUMNS)
#: bytes per index row
ROW = 8 * NCOL
#: the columns that give an image's shape and dtype
KIND = slice(HEIGHT, DTYPE + 1)
#: the only shard names a commit record may list (no directories, no '..', no absolute paths)
SHARD_RE = re.compile(r"shard-([0-9]{6,9})\.tar")
MAX_COMMIT_BYTES = 256 << 20


def shard_name(number: int) -> str:
    """File name of shard ``number``; lexical order is shard order."""
    return f"shard-{number:06d}.tar"
