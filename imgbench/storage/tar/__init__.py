"""Tar backend: WebDataset-compatible tar shards plus a binary index (layout: docs/formats/tar.md).

- :mod:`~imgbench.storage.tar.layout`: names and numbers of the layout (commit record, index columns);
- :mod:`~imgbench.storage.tar.members`: ustar member headers as this backend writes them;
- :mod:`~imgbench.storage.tar.checks`: checks of a commit record and index before they are used;
- :mod:`~imgbench.storage.tar.store`: :class:`TarStore`, and :class:`RemoteTarStore` for URLs;
- :mod:`~imgbench.storage.tar.remote`: how a URL reader fetches the bytes.
"""

from imgbench.storage.tar.layout import (
    CHANNELS,
    CHECKSUM,
    COMMIT,
    DTYPE,
    HEIGHT,
    INDEX,
    INDEX_COLUMNS,
    LABEL,
    OFFSET,
    SHARD,
    SIZE,
    WIDTH,
    shard_name,
)
from imgbench.storage.tar.members import member_header
from imgbench.storage.tar.store import RemoteTarStore, TarStore

__all__ = [
    "CHANNELS", "CHECKSUM", "COMMIT", "DTYPE", "HEIGHT", "INDEX", "INDEX_COLUMNS", "LABEL", "OFFSET", "SHARD",
    "SIZE", "WIDTH", "RemoteTarStore", "TarStore", "member_header", "shard_name",
]
