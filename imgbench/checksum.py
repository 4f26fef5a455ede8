"""Per-image checksums: xxh3-64 of the raw pixels, so any flipped bit is found on any backend.

The digest is taken over the image's little-endian C-order bytes (what the
``none`` codec stores), not over the encoded bytes: one definition for every
backend and codec, verifiable after decoding whatever the container, and
independent of how a codec would react to damage. xxh3 hashes at memory speed
(~1.5 ms for 10,000 CIFAR images here), so it is on by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import CorruptStoreError

#: name recorded in each store's metadata; a store without it has no checksums
ALGORITHM = "xxh3_64"


def _hasher():
    import xxhash

    return xxhash.xxh3_64_intdigest


def _le_bytes(image: np.ndarray) -> memoryview:
    if image.dtype.byteorder == ">" or (image.dtype.byteorder == "=" and np.little_endian is False):
        image = image.astype(image.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(image)).cast("B")


def digests(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """uint64 digest of each image of a stacked batch ``(N, ...)`` or a list of images."""
    digest = _hasher()
    if isinstance(images, np.ndarray):
        n = len(images)
        if n == 0:
            return np.zeros(0, np.uint64)
        flat = _le_bytes(images)
        size = len(flat) // n
        return np.fromiter((digest(flat[o : o + size]) for o in range(0, n * size, size)), np.uint64, n)
    return np.fromiter((digest(_le_bytes(im)) for im in images), np.uint64, len(images))


def check(images: np.ndarray | Sequence[np.ndarray], expected: np.ndarray, indices: Sequence[int], where: str) -> None:
    """Raise CorruptStoreError naming the first image whose pixels do not match its stored digest."""
    got = digests(images)
    bad = np.flatnonzero(got != np.asarray(expected, np.uint64))
    if bad.size:
        k = int(bad[0])
        raise CorruptStoreError(
            f"{where}image {int(indices[k])} does not match its stored checksum ({ALGORITHM}): its bytes are "
            f"damaged{f' ({bad.size} of {len(got)} images in this read)' if bad.size > 1 else ''}"
        )
