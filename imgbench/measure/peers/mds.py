"""MosaicML Streaming (MDS): ``streaming.MDSWriter`` writes shards, ``streaming.StreamingDataset`` reads them (local only)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from imgbench.measure.peers._common import fsync_tree, stacked

COMPRESSION = "raw"
DURABILITY = "MDSWriter does not fsync; compare fsyncs every file and folder it wrote, inside the timed write"


def write(path: str | os.PathLike, images: Any, labels: Any) -> None:
    """One ``MDSWriter`` (``ndarray`` column: dtype and shape kept per image; no compression), then fsync."""
    from streaming import MDSWriter

    columns = {"image": "ndarray"} | ({} if labels is None else {"label": "int64"})
    with MDSWriter(out=os.fspath(path), columns=columns, compression=None, progress_bar=False) as writer:
        for i in range(len(images)):
            sample = {"image": np.asarray(images[i])}
            if labels is not None:
                sample["label"] = np.int64(labels[i])
            writer.write(sample)
    fsync_tree(path)


def _dataset(path: str | os.PathLike) -> Any:
    from streaming import StreamingDataset

    return StreamingDataset(local=os.fspath(path), remote=None, shuffle=False, batch_size=1)


def _close(ds: Any) -> None:
    """Free the dataset's shared memory now, so the next repeat can open the same folder again."""
    from streaming.base.util import clean_stale_shared_memory

    del ds
    clean_stale_shared_memory()


def read_all(path: str | os.PathLike) -> tuple[Any, np.ndarray | None]:
    """Open a ``StreamingDataset`` on the folder and iterate it once, in order."""
    ds = _dataset(path)
    samples = list(ds)
    _close(ds)
    labels = np.asarray([s["label"] for s in samples]) if samples and "label" in samples[0] else None
    return stacked([s["image"] for s in samples]), labels


class _Reader:
    def __init__(self, path: str | os.PathLike):
        self._ds = _dataset(path)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._ds[i]["image"]

    def close(self) -> None:
        ds, self._ds = self._ds, None
        _close(ds)


def open_random(path: str | os.PathLike) -> _Reader:
    """``StreamingDataset[i]``."""
    return _Reader(path)
