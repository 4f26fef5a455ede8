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
    StoreReplacedError,
    UnsupportedError,
)
from imgbench.core.store import Store
from imgbench.core.usage import disk_usage
from imgbench.storage.registry import backends
from imgbench.core import errors  # ``imgbench.errors`` after ``import imgbench``, as before the layers


def __getattr__(name: str):
    """``imgbench.store`` after ``import imgbench``, as before the layers; imported on first use
    because the public-name modules sit in the top layer."""
    if name == "store":
        import importlib

        return importlib.import_module("imgbench.store")
    raise AttributeError(f"module 'imgbench' has no attribute {name!r}")

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
    "StoreReplacedError",
    "RemoteAccessError",
]
