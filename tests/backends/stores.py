"""Small stores the layout tests of several backends build and read the same way."""

from __future__ import annotations

import numpy as np

import imgbench

from ..conftest import sample

#: images in a store of :func:`build_store`
N = 20
_SUFFIX = {"disk": "", "hdf5": ".h5", "lmdb": ".lmdb"}


def build_store(tmp_path, compression=None, n=N, *, backend: str):
    """``n`` labelled 16x16x3 images in ``c-<compression>`` plus the backend's suffix."""
    path = tmp_path / f"c-{compression}{_SUFFIX[backend]}"
    images = np.stack([sample((16, 16, 3), np.uint8, seed=i) for i in range(n)])
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=np.arange(n))
    return path, images


def read_everything(path) -> None:
    """Touch every part of a store a reader can: all images at once, each image, the labels."""
    with imgbench.open(path) as s:
        s.read_many()
        for i in range(len(s)):
            s[i]
        s.labels
