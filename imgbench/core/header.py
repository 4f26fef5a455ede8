"""The metadata header every store carries: format, version, backend, count, attrs, and its check.

Each backend keeps the header in its own commit record (a JSON file, an LMDB key,
an HDF5 attribute, zarr group attributes); :func:`check_meta` is the one place
that decides whether what it found is an imgbench store this code may read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgbench.core.errors import CorruptStoreError, FormatVersionError

#: Version of the on-disk layouts this code writes; it reads this and older.
FORMAT_VERSION = 1


def check_meta(meta: Any, backend: str, path: Path) -> dict[str, Any]:
    """Validate the common header every store carries; raise CorruptStoreError otherwise."""
    if not isinstance(meta, dict) or meta.get("format") != "imgbench":
        raise CorruptStoreError(f"{path} is not an imgbench store (its metadata header is missing or foreign)")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise CorruptStoreError(f"{path}: metadata has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{path} was written in imgbench format version {version}, newer than this imgbench reads "
            f"({FORMAT_VERSION}); upgrade: pip install -U imgbench"
        )
    if meta.get("backend") != backend:
        raise CorruptStoreError(f"{path}: metadata names backend {meta.get('backend')!r}, found a {backend} store")
    count = meta.get("count")
    if not isinstance(count, int) or count < 0:
        raise CorruptStoreError(f"{path}: metadata has an invalid image count ({count!r})")
    if not isinstance(meta.get("attrs", {}), dict):
        raise CorruptStoreError(f"{path}: metadata attrs are not a mapping")
    return meta
