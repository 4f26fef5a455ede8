"""Repeats on a noisy shared machine: interleaved, and quoted as medians with their spread."""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def interleaved(items: Sequence[T], repeats: int, *, alternate: bool = False) -> Iterator[tuple[int, list[T]]]:
    """``(r, items)`` for repeat ``r`` = 0, 1, ...: repeat 1 of every item, then repeat 2, ...

    Machine drift (write-back of earlier runs, neighbours on a shared host) then spreads
    over all items instead of penalising one. ``alternate`` reverses the order on odd
    repeats, so that of two sides timed back to back neither always goes first.
    """
    order = list(items)
    for r in range(repeats):
        yield r, (order[::-1] if alternate and r % 2 else list(order))


def summarize(values: Sequence[float]) -> dict[str, float] | None:
    """Median and spread of the repeats (medians are what we quote on a noisy machine); None for none.

    ``spread`` is ``(max - min) / median``.
    """
    if not values:
        return None
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med > 0 else 0.0,
        "n": len(values),
    }
