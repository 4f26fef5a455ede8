"""Decompression-bomb limits: how many decoded bytes a stored blob can honestly stand for.

A damaged or hostile store may declare any decoded size; a reader compares the
declaration with the bytes really stored *before* it allocates or decodes
anything. Every such bound lives here, so each codec's limit is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: deflate (PNG, HDF5 gzip) expands its input at most ~1032:1 ...
DEFLATE_EXPANSION = 1032
#: ... so a PNG that claims more decoded bytes than this many per stored byte is a lie
DEFLATE_MAX_RATIO = 1040
#: Zstandard's densest encoding is an RLE block: 4 bytes (3 of block header, 1 of payload)
#: for at most 128 KiB, i.e. 32768:1; any frame claiming more is a lie
ZSTD_MAX_RATIO = 1 << 15
#: best ratio any HDF5 filter imgbench writes reaches (zstd on zeros): stored bytes times
#: this bounds what a compressed dataset may declare
HDF5_MAX_RATIO = max(DEFLATE_MAX_RATIO, ZSTD_MAX_RATIO)
#: largest ratio a genuine zarr chunk reaches, per compression (zstd on zeros: ~33,000;
#: blosc ~18,000), applied to whole shard objects
ZARR_MAX_RATIO = {"none": 1, "zstd": 1 << 16, "blosc": 1 << 16}
#: bytes a zarr array (or a zstd chunk's frame) may declare beyond what its ratio allows
ZARR_SLACK_BYTES = 1 << 20
#: deflate output above which an HDF5 chunk is test-inflated (bounded) before HDF5 sees it
HDF5_INFLATE_FREE = 16 << 20


@dataclass(frozen=True)
class RatioLimit:
    """At most ``ratio`` decoded bytes per stored byte, plus ``slack`` for headers and tiny blobs."""

    ratio: int
    slack: int = 0

    def exceeded(self, decoded: float | np.ndarray, stored: float | np.ndarray) -> bool | np.ndarray:
        """True where ``decoded`` bytes cannot come from ``stored`` bytes (scalars or numpy arrays)."""
        return decoded > self.ratio * stored + self.slack


#: one stored PNG (its header and IEND chunk are the slack)
PNG = RatioLimit(DEFLATE_MAX_RATIO, 4096)
#: one stored zstd frame
ZSTD_FRAME = RatioLimit(ZSTD_MAX_RATIO, 65536)
