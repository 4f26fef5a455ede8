"""The axes of a comparison: datasets (images at growing counts) x settings (backend/compression).

Shared by the comparison matrix (:mod:`imgbench.measure.compare`) and the parallel reads
(:mod:`imgbench.measure.parallel_read`), which measure the same cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgbench.core.errors import ImgbenchError


class CompareError(ImgbenchError):
    """A comparison that cannot be planned as asked (bad option values)."""


@dataclass
class Dataset:
    """Images to compare on: the first ``n`` of ``images`` for each ``n`` in ``counts``."""

    name: str
    about: str
    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    counts: list[int]
    source: str = "builtin"
    notes: list[str] = field(default_factory=list)

    def raw_bytes(self, n: int) -> int:
        if isinstance(self.images, np.ndarray):
            return int(self.images[:n].nbytes)
        return int(sum(im.nbytes for im in self.images[:n]))

    def describe(self) -> dict[str, Any]:
        first = self.images[:max(self.counts)]
        kinds: dict[str, int] = {}
        for im in (first if isinstance(first, list) else [first[0]] * len(first)):
            key = f"{'x'.join(map(str, im.shape))} {im.dtype}"
            kinds[key] = kinds.get(key, 0) + 1
        return {
            "name": self.name,
            "about": self.about,
            "source": self.source,
            "images": len(self.images),
            "counts": self.counts,
            "labelled": self.labels is not None,
            "shapes": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:10]),
            "raw_bytes_largest": self.raw_bytes(max(self.counts)),
            "notes": self.notes,
        }


@dataclass
class Setting:
    """One column of the matrix: a backend and the compression it writes with."""

    backend: str
    compression: str
    #: measured only on datasets of 16-bit images (the medical codec compare adds for them)
    only_16bit: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.compression}"

    def applies(self, ds: Dataset) -> bool:
        """Whether this setting is measured on ``ds``."""
        return not self.only_16bit or ds.images[0].dtype.itemsize == 2


def settings_of(settings: Sequence[Setting], ds: Dataset) -> list[Setting]:
    """The settings measured on ``ds``."""
    return [s for s in settings if s.applies(ds)]


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``-`` and ``_`` replaced by ``_`` (a file name)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def cell_name(dataset: str, count: int, setting: Setting) -> str:
    """File name of the store measured for one cell: ``cifar-100-lmdb-zstd``."""
    return f"{safe_name(dataset)}-{count}-{setting.backend}-{setting.compression}"
