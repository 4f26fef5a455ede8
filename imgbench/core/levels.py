"""Compression levels: which ones a compression takes, its default, and the one check of a requested level.

Per-image codecs (:mod:`imgbench.core.codecs`) and containers with their own
filters (HDF5, zarr) describe their levels with a :class:`LevelRange`, so every
backend accepts and rejects levels by the same rule with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgbench.core.errors import UnsupportedError


@dataclass(frozen=True)
class LevelRange:
    """Levels ``low`` to ``high`` inclusive, and the one used when none is given."""

    low: int
    high: int
    default: int


def check_level(compression: str, level: int | None, levels: LevelRange | None) -> int | None:
    """The level to store with ``compression`` (its default for None); UnsupportedError for a bad one.

    ``levels`` None means the compression takes no level, so any level is refused."""
    if levels is None:
        if level is not None:
            raise UnsupportedError(f"compression {compression!r} takes no level; drop level={level!r}",
                                   cli=f"compression {compression!r} takes no level; drop --level {level}")
        return None
    if level is None:
        return levels.default
    low, high = levels.low, levels.high
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not low <= level <= high:
        raise UnsupportedError(
            f"level {level!r} is out of range for {compression!r}: use an integer from {low} to {high}"
        )
    return int(level)
