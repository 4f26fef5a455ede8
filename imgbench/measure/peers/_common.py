"""What every peer adapter shares: durable writes (as imgbench's stores) and read-all as one array (as ``read_many``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.measure.harness import store_files


def fsync_tree(path: str | os.PathLike) -> None:
    """fsync every file below ``path`` and then every folder (so the names are durable too).

    None of the peers fsyncs what it writes; imgbench's stores do, so compare adds this to each
    peer's timed write -- otherwise a peer's write would be timed into the page cache only.
    """
    root = Path(os.fspath(path))
    for file in store_files(root):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stacked(images: list[Any]) -> Any:
    """The images as one array when their shapes and dtypes agree (what ``Store.read_many`` returns), else the list.

    A peer's reader yields one sample at a time; a user who wants the batch stacks it, so the
    stacking is part of the peer's timed read-all, as it is part of imgbench's.
    """
    if images and all(a.shape == images[0].shape and a.dtype == images[0].dtype for a in images):
        return np.stack(images)
    return images
