"""Describing a store and checking that every image in it reads back whole."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptStoreError
from .measure import disk_usage
from .store import open as open_store


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``imgbench info`` prints: backend, compression, count, shapes, labels, attrs, bytes."""
    with open_store(path) as store:
        n = len(store)
        kinds: Counter[str] = Counter()
        # Shapes of a sample, not all: info must stay instant on a million images.
        step = max(1, n // 1000)
        for i in range(0, n, step):
            image = store[i]
            kinds[f"{'x'.join(map(str, image.shape))} {image.dtype}"] += 1
        labels = store.labels
        return {
            "path": str(store.path),
            "backend": store.backend,
            "compression": store.compression,
            "level": store.level,
            "images": n,
            "shapes": dict(kinds.most_common(5)) if step == 1 else {k: "sampled" for k, _ in kinds.most_common(5)},
            "labelled": labels is not None,
            "classes": int(len(set(labels.tolist()))) if labels is not None else 0,
            "attrs": store.attrs.to_dict(),
            "disk": disk_usage(path),
        }


@dataclass
class VerifyReport:
    images: int = 0
    damaged: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: False for stores written without per-image checksums: only damage the format itself detects is found
    checksummed: bool = True

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems


def verify(path: str | os.PathLike, progress: bool = False) -> VerifyReport:
    """Read every image, check it against its stored checksum, and read the labels.

    Collects what is damaged instead of stopping at the first.
    """
    report = VerifyReport()
    try:
        store = open_store(path, verify=True)
    except CorruptStoreError as exc:
        report.problems.append(str(exc))
        return report
    with store:
        report.images = len(store)
        try:
            report.checksummed = store.checksums is not None
        except CorruptStoreError as exc:
            report.problems.append(str(exc))
            store.verify = False  # still read every image: the format's own checks remain
        indices = range(len(store))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc="verify", unit="img", disable=None)
        for i in indices:
            try:
                store[i]
            except CorruptStoreError as exc:
                report.damaged[i] = str(exc)
        try:
            store.labels
        except CorruptStoreError as exc:
            report.problems.append(str(exc))
    return report
