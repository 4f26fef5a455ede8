"""A one-minute tour: built-in images into every backend, read back, sizes compared.

``imgbench compare`` is the full measurement; this is the short demo the quick
start runs until then, and a smoke test of an installation.
"""

from __future__ import annotations

import os
import time

import numpy as np

from imgbench.adapters import datasets
from imgbench.api import open as open_store
from imgbench.core import transport
from imgbench.core.usage import disk_usage
from imgbench.measure.harness import same_images
from imgbench.storage.registry import backends, get


def run(out: str | os.PathLike, count: int = 2000, dataset: str = "cifar") -> list[dict]:
    """Write ``count`` built-in images with each backend and compression; return one row each."""
    out = transport.local_destination(out, "demo folder (--out)")
    images = datasets.generate(dataset, count)
    labels = datasets.labels(count)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in backends():
        for compression in get(name).compressions:
            path = out / f"{dataset}-{name}-{compression}"
            t0 = time.perf_counter()
            with open_store(path, "w", backend=name, compression=compression) as store:
                store.extend(images, labels=labels)
            t1 = time.perf_counter()
            with open_store(path) as store:
                back = store.read_many()
                t2 = time.perf_counter()
                exact = same_images(back, images) and bool(np.array_equal(store.labels, labels))
            usage = disk_usage(path)
            rows.append(
                {
                    "backend": name,
                    "compression": compression,
                    "write_s": t1 - t0,
                    "read_s": t2 - t1,
                    "bytes": usage["allocated"],
                    "files": usage["files"],
                    "exact": exact,
                }
            )
    return rows
