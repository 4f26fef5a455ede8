"""litdata (Lightning AI): ``litdata.optimize`` writes chunks, ``litdata.StreamingDataset`` reads them (local folder)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from imgbench.measure.peers._common import fsync_tree, stacked

COMPRESSION = "raw"
DURABILITY = ("optimize() does not fsync; compare fsyncs every file and folder it wrote, inside the timed write")

#: what the one optimize worker reads (set just before optimize forks it; never pickled)
_SOURCE: dict[str, Any] = {}


def _sample(i: int) -> dict[str, Any]:
    labels = _SOURCE["labels"]
    sample = {"image": np.asarray(_SOURCE["images"][i])}
    if labels is not None:
        sample["label"] = int(labels[i])
    return sample


def write(path: str | os.PathLike, images: Any, labels: Any) -> None:
    """``optimize`` with one forked worker (no pickling of the images), then fsync."""
    import litdata

    _SOURCE.update(images=images, labels=labels)
    try:
        litdata.optimize(fn=_sample, inputs=list(range(len(images))), output_dir=os.fspath(path),
                         chunk_bytes="64MB", num_workers=1, start_method="fork", mode="overwrite", verbose=False)
    finally:
        _SOURCE.clear()
    fsync_tree(path)


def _labels(samples: list[dict[str, Any]]) -> np.ndarray | None:
    return np.asarray([s["label"] for s in samples]) if samples and "label" in samples[0] else None


def read_all(path: str | os.PathLike) -> tuple[Any, np.ndarray | None]:
    """Open a ``StreamingDataset`` on the folder and iterate it once, in order."""
    import litdata

    samples = list(litdata.StreamingDataset(os.fspath(path), shuffle=False))
    return stacked([s["image"] for s in samples]), _labels(samples)


class _Reader:
    def __init__(self, path: str | os.PathLike):
        import litdata

        self._ds = litdata.StreamingDataset(os.fspath(path), shuffle=False)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._ds[i]["image"]

    def close(self) -> None:
        self._ds = None


def open_random(path: str | os.PathLike) -> _Reader:
    """``StreamingDataset[i]``."""
    return _Reader(path)
