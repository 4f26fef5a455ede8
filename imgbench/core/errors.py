"""Error classes of the public contract.

Each error also derives from the builtin a caller would naturally catch
(``ValueError`` for bad arguments, ``FileExistsError``/``FileNotFoundError`` for
paths), so code written without imgbench in mind still handles them.
"""

from __future__ import annotations


class ImgbenchError(Exception):
    """Base class of every error imgbench raises on purpose.

    ``cli`` is the same message in the command line's words (``--backend`` where the message says
    ``backend=``); the CLI prints it instead of ``str(error)`` when it is set."""

    def __init__(self, *args: object, cli: str | None = None) -> None:
        super().__init__(*args)
        self.cli = cli

    def __reduce__(self):  # keeps ``cli`` across a process pool, where errors travel pickled
        return (_rebuild, (type(self), self.args, self.cli))

    def for_cli(self) -> str:
        """The message as the CLI prints it."""
        return self.cli or str(self)


def _rebuild(cls: type, args: tuple, cli: str | None) -> ImgbenchError:
    return cls(*args, cli=cli)


class InvalidImageError(ImgbenchError, ValueError):
    """An image, batch or label cannot be stored: bad shape, dtype or label count."""


class UnsupportedError(ImgbenchError, ValueError):
    """A backend, compression, level, option or dtype/codec pair that is not supported."""


class StoreExistsError(ImgbenchError, FileExistsError):
    """Something already exists where a new store was to be created."""


class StoreNotFoundError(ImgbenchError, FileNotFoundError):
    """No store at the given path."""


class CorruptStoreError(ImgbenchError):
    """The store is damaged, truncated, or holds data imgbench does not recognise."""


class FormatVersionError(CorruptStoreError, UnsupportedError):
    """The store was written by a newer imgbench format version than this one reads."""


class StoreLockedError(ImgbenchError):
    """Another process holds the store for writing."""


class StoreReplacedError(ImgbenchError):
    """The store at the path was replaced (by mode ``w``, or another program) since it was opened: a
    reader cannot read on, a writer does not commit into the store that replaced the one it opened.
    Never damage: reopen the path."""


class RemoteAccessError(ImgbenchError):
    """Reading a URL failed for a reason outside the store: the server is unreachable, refused the
    credentials or failed. Never damage: a sharded reader or ``imgbench verify`` must not call the data
    corrupt because the network is down."""


__all__ = [
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
