"""imgbench: store many images fast and safely, and measure which way is best.

Public API (the contract in DESIGN.md): :func:`open`, :func:`backends`,
:func:`disk_usage`, :class:`Store` and the error classes.
"""

from .errors import (
    CorruptStoreError,
    FormatVersionError,
    ImgbenchError,
    InvalidImageError,
    RemoteAccessError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    UnsupportedError,
)
from .measure import disk_usage
from .storage.registry import backends
from .store import Store, open

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "open",
    "backends",
    "disk_usage",
    "Store",
    "ImgbenchError",
    "InvalidImageError",
    "UnsupportedError",
    "StoreExistsError",
    "StoreNotFoundError",
    "CorruptStoreError",
    "FormatVersionError",
    "StoreLockedError",
    "RemoteAccessError",
]
