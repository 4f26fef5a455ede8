"""imgbench: store many images fast and safely, and measure which way is best.

Public API (the contract in docs/design.md): :func:`open`, :func:`backends`,
:func:`disk_usage`, :class:`Store`, the error classes and :mod:`imgbench.datasets`.

The package is layered, each layer importing only those below it (checked by import-linter,
see ``[tool.importlinter]`` in pyproject.toml): ``core`` (contract, safe I/O) < ``storage``
(backends) < ``sharded`` < ``api`` (:func:`open`) < ``adapters`` < ``measure`` < ``present``
< ``cli``. This module only re-exports.
"""

__version__ = "0.1.0"

from imgbench.adapters import datasets
from imgbench.api import open  # noqa: E402 - after the names it needs
from imgbench.core.errors import (
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
from imgbench.core.store import Store
from imgbench.core.usage import disk_usage
from imgbench.storage.registry import backends

__all__ = [
    "__version__",
    "open",
    "backends",
    "disk_usage",
    "datasets",
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
