"""Shared fixtures: every backend and every compression, from the registry.

Tests iterate over the registry, so a new backend is covered by registering it.
"""

from __future__ import annotations

import numpy as np
import pytest

import imgbench
from imgbench.storage import registry

BACKENDS = imgbench.backends()
CONFIGS = [(b, c) for b in BACKENDS for c in registry.get(b).compressions]
#: compressions that store every supported dtype bit-exactly (not PNG)
RAW_CAPABLE = {"none", "zstd", "gzip", "lzf", "blosc"}


def config_id(cfg: tuple[str, str]) -> str:
    return f"{cfg[0]}-{cfg[1]}"


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(params=CONFIGS, ids=config_id)
def config(request) -> tuple[str, str]:
    return request.param


def dtypes_for(compression: str) -> list[np.dtype]:
    all_ = [np.dtype(d) for d in ("uint8", "uint16", "int16", "float32")]
    return all_ if compression in RAW_CAPABLE else all_[:2]


def sample(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """An image that uses the dtype's whole range, extremes included."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        img = rng.normal(0, 1e3, shape).astype(dtype)
        flat = img.reshape(-1)
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).max, np.finfo(dtype).tiny], dtype)
        flat[: min(len(flat), len(specials))] = specials[: len(flat)]
        return img
    info = np.iinfo(dtype)
    img = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    flat = img.reshape(-1)
    flat[0] = info.min
    flat[-1] = info.max
    return img


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality: dtype, shape and every bit (NaN payloads included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def store_path(tmp_path, backend: str, name: str = "store"):
    suffix = {"lmdb": ".lmdb", "hdf5": ".h5"}.get(backend, "")
    return tmp_path / f"{name}{suffix}"


def snapshot(path) -> tuple:
    """Everything a reader sees in a store, to compare before and after a failed operation."""
    with imgbench.open(path) as s:
        images = [s[i] for i in range(len(s))]
        return (
            len(s),
            [im.tobytes() for im in images],
            [(im.shape, im.dtype) for im in images],
            None if s.labels is None else s.labels.tolist(),
            s.attrs.to_dict(),
        )


def forked_results(target, store, n: int = 2) -> list:
    """Run ``target(store, queue)`` in ``n`` forked children; what each put on the queue (all exited 0)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(store, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results
