"""Every measurement checks that it read what was written: count, dtype, shape and values.

One rule for every harness: images written as one stacked array must read back as one
stacked array (the Store contract: ``read_many`` stacks images whose shapes agree); images
written as a list (different shapes) read back image by image, as a list or stacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _array_mismatch(got: Any, want: np.ndarray, what: str) -> str | None:
    if not isinstance(got, np.ndarray):
        return f"{what} is a {type(got).__name__}, not an array"
    if got.dtype != want.dtype:
        return f"{what} has dtype {got.dtype}, not {want.dtype}"
    if got.shape != want.shape:
        return f"{what} has shape {got.shape}, not {want.shape}"
    if not np.array_equal(got, want):
        return f"{what} has other values"
    return None


def mismatch(got: Any, want: np.ndarray | Sequence[np.ndarray]) -> str | None:
    """What differs between the images read (``got``) and those written (``want``); None when exact."""
    if isinstance(want, np.ndarray):
        return _array_mismatch(got, want, "what was read")
    if len(got) != len(want):
        return f"{len(got)} images were read, not {len(want)}"
    for k, (a, b) in enumerate(zip(got, want)):
        problem = _array_mismatch(a, b, f"image {k}")
        if problem:
            return problem
    return None


def same_images(got: Any, want: np.ndarray | Sequence[np.ndarray]) -> bool:
    """True when ``got`` holds exactly the images of ``want`` (see :func:`mismatch`)."""
    return mismatch(got, want) is None
