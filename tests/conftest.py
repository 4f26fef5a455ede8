"""Helpers shared by every test folder, and the run-wide pytest settings.

The tree (tests/README.md): ``contract/`` runs the conformance suite on every backend of
``imgbench.backends()`` through a per-backend kit (``contract/backends.py``, with the
``backend``, ``kit`` and ``config`` fixtures in ``contract/conftest.py``); ``backends/`` holds
what only one backend has; the other folders are areas (sharded, remote, bench, cli, adapters).
"""

from __future__ import annotations

import numpy as np
import pytest

import imgbench

#: compressions that store every supported dtype bit-exactly (not PNG)
RAW_CAPABLE = {"none", "zstd", "gzip", "lzf", "blosc"}


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Timing for real (``--benchmark-enable``, as .ci/perf does) runs in this one process.

    ``addopts`` spreads the suite over xdist workers; pytest-benchmark refuses to time under
    xdist (it would disable every benchmark), so a benchmarking run turns the workers off.
    """
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "benchmark_enable", False):
        config.option.numprocesses = 0


#: started first, longest first: the tests and xdist groups that take from ~10 s to minutes on a
#: busy 2-core machine, so that a run does not end with one worker finishing a long test alone
START_FIRST = (
    "tests/docs/test_site.py::test_every_page_renders_in_chromium",
    "tests/bench/test_asv_suite.py",
    "tests/remote/test_s3.py",
    "tests/bench/test_compare.py::test_cli_compare_writes_report_and_json",
    "tests/adapters/test_convert_dask.py",
    "tests/adapters/test_torch.py::test_spawned_workers",
    "tests/contract/test_crashes.py",
)


def pytest_collection_modifyitems(config, items):
    """Start the long tests first (see START_FIRST), then the other slow ones; otherwise collection order."""
    def rank(item) -> int:
        for k, prefix in enumerate(START_FIRST):
            if item.nodeid.startswith(prefix):
                return k
        return len(START_FIRST) + (item.get_closest_marker("slow") is None)

    items.sort(key=rank)  # stable: the same order on every xdist worker


def supports(compression: str, dtype, shape: tuple[int, ...] = ()) -> bool:
    """Whether ``compression`` claims to store ``dtype`` (and ``shape``'s channel count) exactly.

    Per-image codecs say so themselves (imgbench.core.codecs); container filters (HDF5, zarr) store raw bytes."""
    from imgbench.core import codecs

    codec = codecs.CODECS.get(compression)
    if codec is None:
        return True
    return np.dtype(dtype) in codec.dtypes and (shape[2] if len(shape) == 3 else 1) in codec.channels


def dtypes_for(compression: str) -> list[np.dtype]:
    return [np.dtype(d) for d in ("uint8", "uint16", "int16", "float32") if supports(compression, d)]


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
