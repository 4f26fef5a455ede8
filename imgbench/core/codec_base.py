"""The codec interface and the registry of codecs by name (filled by :mod:`imgbench.core.codecs`).

Apart from :mod:`imgbench.core.codecs` so that codec families in their own modules
(:mod:`imgbench.core.imagecodecs_lossless`) subclass it without an import cycle.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from imgbench.core.errors import UnsupportedError
from imgbench.core.levels import LevelRange, check_level

_UNSIGNED = frozenset(np.dtype(d) for d in ("uint8", "uint16"))
_ALL = frozenset(np.dtype(d) for d in ("uint8", "uint16", "int16", "float32"))


class Codec:
    """One way to turn an image into bytes; subclasses are stateless singletons."""

    name: ClassVar[str]
    #: the levels it takes and its default, or None when the codec has no level.
    levels: ClassVar[LevelRange | None] = None
    dtypes: ClassVar[frozenset[np.dtype]] = _ALL
    #: file suffix used by one-file-per-image stores.
    suffix: ClassVar[str]

    @property
    def default_level(self) -> int | None:
        return None if self.levels is None else self.levels.default

    def check_level(self, level: int | None) -> int | None:
        """Return the level to use, or raise UnsupportedError for a bad one."""
        return check_level(self.name, level, self.levels)

    #: channel counts it stores (1 covers 2-D images and a trailing axis of 1)
    channels: ClassVar[frozenset[int]] = frozenset({1, 2, 3, 4})

    def check_dtype(self, dtype: np.dtype) -> None:
        if np.dtype(dtype) not in self.dtypes:
            names = ", ".join(sorted(str(d) for d in self.dtypes))
            others = ", ".join(supporting(dtype)) or "none"
            raise UnsupportedError(
                f"compression {self.name!r} cannot store {np.dtype(dtype)} images exactly "
                f"(it takes {names}); codecs that store {np.dtype(dtype)} exactly: {others}. "
                "Pick one of those, or convert the images"
            )

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise UnsupportedError (before anything is written) for a channel count it cannot store."""
        channels = shape[2] if len(shape) == 3 else 1
        if channels not in self.channels:
            takes = ", ".join(str(c) for c in sorted(self.channels))
            others = ", ".join(n for n, c in REGISTRY.items() if channels in c.channels)
            raise UnsupportedError(
                f"compression {self.name!r} cannot store {channels}-channel images (it takes {takes} channels); "
                f"codecs that do: {others}"
            )

    def encode(self, image: np.ndarray, level: int | None) -> bytes:
        raise NotImplementedError

    def decode(self, data, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Return a fresh writable array of exactly ``dtype`` and ``shape``."""
        raise NotImplementedError


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def _le(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


#: every codec by name, in the order they were registered
REGISTRY: dict[str, Codec] = {}


def supporting(dtype: np.dtype, allowed: tuple[str, ...] | None = None) -> list[str]:
    """The codecs (among ``allowed``) that store ``dtype`` exactly, for error messages."""
    return [n for n in (allowed or tuple(REGISTRY)) if n in REGISTRY and np.dtype(dtype) in REGISTRY[n].dtypes]
