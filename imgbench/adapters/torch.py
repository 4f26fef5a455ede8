"""PyTorch adapter: an imgbench store as a map-style ``torch.utils.data.Dataset``.

``StoreDataset(path)[i]`` is ``(image, label)``:

- ``image``: without ``transform``, ``torch.from_numpy`` of the stored array,
  exactly as written: same dtype (uint8, uint16, int16, float32), same shape,
  channels last ``(H, W[, C])``; no scaling, no transposition (a transform such
  as ``lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255`` does
  that). With ``transform``, ``transform(array)`` and nothing else, so
  torchvision v2 transforms, albumentations or plain functions all fit.
- ``label``: the stored int label, or ``-1`` when the store is unlabelled
  (``dataset.labelled`` tells which). ``None`` would make PyTorch's default
  collate fail, and an int keeps batches as one int64 tensor.

Worker processes: nothing is opened in ``__init__`` except briefly, to learn
the length and whether the store is labelled; the store is opened lazily, once
per process, on the first item that process reads. A pickled dataset (spawn,
forkserver) carries only the path, the options, the transform and those two
facts; a forked worker that inherits a store opened in the parent never uses
it and opens its own. So ``DataLoader(ds, num_workers=2,
multiprocessing_context="fork" | "spawn")`` works without a ``worker_init_fn``.

PyTorch is an optional extra: ``pip install 'imgbench[torch]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError(
        "imgbench.torch needs PyTorch, which is an optional extra: pip install 'imgbench[torch]' "
        "(on CPU-only machines install torch from https://download.pytorch.org/whl/cpu first)"
    ) from exc

import numpy as np

from imgbench.api import open as open_store
from imgbench.core.errors import ImgbenchError
from imgbench.core.store import Store

__all__ = ["StoreDataset"]

#: label of every sample of an unlabelled store
NO_LABEL = -1


class StoreDataset(Dataset):
    """Map-style dataset over an imgbench store; safe in DataLoader workers (fork or spawn).

    ``options`` are passed to :func:`imgbench.open` (backend options such as
    LMDB ``readahead=False`` for random access on cold data).
    """

    def __init__(self, path: str | os.PathLike, transform: Callable[[np.ndarray], Any] | None = None, **options: Any):
        self.path = os.fspath(path)
        self.transform = transform
        self.options = dict(options)
        # Learn the length and labelling now, then close: no handle survives __init__.
        with open_store(self.path, **self.options) as store:
            self._len = len(store)
            self.labelled = store.labels is not None
        self._store: Store | None = None
        self._labels: np.ndarray | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self._len

    def _open(self) -> Store:
        """This process's store, opened on first use (a forked child opens its own)."""
        if self._store is None or self._pid != os.getpid():
            # An inherited store belongs to the parent: drop it unused (Store never
            # closes another process's handles).
            store = open_store(self.path, **self.options)
            labels = store.labels
            if len(store) < self._len or (labels is not None) != self.labelled:
                store.close()
                raise ImgbenchError(
                    f"{self.path} changed since this dataset was created ({len(store)} images now, "
                    f"{self._len} then, or labels added/removed): the store was replaced; create the dataset again"
                )
            self._store, self._pid = store, os.getpid()
            self._labels = labels
        return self._store

    def _sample(self, image: np.ndarray, index: int) -> tuple[Any, int]:
        label = int(self._labels[index]) if self._labels is not None else NO_LABEL
        if self.transform is not None:
            return self.transform(image), label
        return torch.from_numpy(image), label

    def _check(self, index: int) -> int:
        index = int(index)
        if not -self._len <= index < self._len:
            raise IndexError(f"index {index} is out of range for a dataset of {self._len} images")
        return index + self._len if index < 0 else index

    def __getitem__(self, index: int) -> tuple[Any, int]:
        index = self._check(index)
        return self._sample(self._open()[index], index)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        """A whole batch in one ``read_many`` (DataLoader calls this when batching)."""
        idx = [self._check(i) for i in indices]
        images = self._open().read_many(idx) if idx else []
        return [self._sample(images[k], i) for k, i in enumerate(idx)]

    def close(self) -> None:
        """Close this process's store (it reopens on the next item)."""
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = self._labels = self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "transform": self.transform,
            "options": self.options,
            "len": self._len,
            "labelled": self.labelled,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.transform = state["transform"]
        self.options = state["options"]
        self._len = state["len"]
        self.labelled = state["labelled"]
        self._store = self._labels = self._pid = None

    def __repr__(self) -> str:
        return f"StoreDataset({self.path!r}, images={self._len}, labelled={self.labelled})"
