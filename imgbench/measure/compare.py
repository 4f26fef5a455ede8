"""The comparison matrix behind ``imgbench compare``: every backend x setting x image count, measured.

Planning lives in :mod:`imgbench.measure.compare_plan` (its names are importable from here
too), the axes in :mod:`imgbench.measure.matrix`, what every measurement shares (allocator,
eviction, repeats, exactness, machine) in :mod:`imgbench.measure.harness`.

Method (what the figures mean, also written into results.json):

- Images are made or read into memory first; nothing timed allocates the input.
- Repeats are interleaved: repeat 1 of every setting, then repeat 2, ..., so
  machine drift (write-back of earlier runs, neighbours on a shared host)
  spreads over all settings instead of penalising one. Medians are quoted,
  with the min..max spread.
- Before each timed write the old store is removed (untimed) and ``os.sync()``
  flushes earlier dirty pages. The write is ``imgbench.open(..., "w")`` +
  ``extend`` + ``close`` -- including the store's own fsync and atomic publish,
  because that is what a user pays.
- Read-all is open + ``read_many()`` + close. Random read is ``store[i]`` for
  random distinct indices on an open store (per-image latency = time / reads).
- Warm cache reads right after the write; cold cache evicts every file of the
  store first (fsync + ``posix_fadvise(DONTNEED)``, no root needed).
- Every repeat checks that what it read (all, and each random image) equals
  what it wrote: dtype, shape, values and labels.
- Peak memory: a separate, untimed pass per cell (which also warms up the
  code paths) traces the Python/NumPy allocations of the write and of the
  read-all with ``tracemalloc`` -- memory above what was allocated before.
  Buffers inside C libraries (libpng, the HDF5 chunk cache) and memory-mapped
  pages (LMDB) are not counted.
- Parallel reads (``--parallel-workers``): a sharded copy of each dataset's
  largest count, read by 1, 2, ... worker processes at once; see
  :mod:`imgbench.parallel_read` for the method.
- Freshly allocated memory is slow to touch on many VMs; during the run glibc
  is told to keep and reuse freed memory (``mallopt``, see
  :mod:`imgbench.measure.harness.allocator`), so timings measure storage, not
  page faults; its defaults are restored afterwards. results.json records
  whether that took effect.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.api import open as open_store
from imgbench.core import atomic
from imgbench.core.errors import ImgbenchError, UnsupportedError
from imgbench.core.usage import disk_usage
from imgbench.measure import parallel_read, peers
from imgbench.measure.compare_plan import (  # noqa: F401  (re-exported: compare's public names)
    DEFAULT_BUDGET,
    DEFAULT_PARALLEL_REPEATS,
    DEFAULT_RANDOM_READS,
    DEFAULT_REPEATS,
    MAX_DEFAULT_COUNT,
    PARALLEL_BUDGET,
    PREFERRED_COMPRESSED,
    QUICK_BUDGET,
    QUICK_MAX_COUNT,
    QUICK_PARALLEL_BUDGET,
    SOURCE_BUDGET,
    Plan,
    builtin_dataset,
    default_counts,
    make_plan,
    parse_counts,
    settings_for,
    source_dataset,
)
from imgbench.measure.harness import (  # noqa: F401  (evict, machine_info, ... re-exported)
    Progress,
    allocator_tuned,
    evict,
    interleaved,
    machine_info,
    mismatch,
    no_progress,
    prepare_write,
    same_images,
    summarize,
    tune_allocator,
    versions,
)
from imgbench.measure.matrix import (
    CompareError,
    Dataset,
    Setting,
    cell_name,
    settings_of,
)
from imgbench.storage import registry

#: schema of results.json; bump when its meaning changes
RESULTS_VERSION = 1


# ---------------------------------------------------------------- timed calls
def _time_write(path: Path, setting: Setting, images: Any, labels: Any) -> float:
    prepare_write(path)
    t0 = time.perf_counter()
    with open_store(path, "w", backend=setting.backend, compression=setting.compression) as store:
        store.extend(images, labels=labels)
    return time.perf_counter() - t0


def _time_read_all(path: Path) -> tuple[float, Any, Any]:
    t0 = time.perf_counter()
    with open_store(path) as store:
        got = store.read_many()
        elapsed = time.perf_counter() - t0
        labels = store.labels
    return elapsed, got, labels


def _time_random(path: Path, indices: np.ndarray, images: Any) -> tuple[float, bool]:
    with open_store(path) as store:
        out = [None] * len(indices)
        t0 = time.perf_counter()
        for k, i in enumerate(indices.tolist()):
            out[k] = store[i]
        elapsed = time.perf_counter() - t0
    return elapsed, same_images(out, [images[i] for i in indices.tolist()])


def _memory_pass(path: Path, setting: Setting, images: Any, labels: Any) -> dict[str, int]:
    """Peak extra Python/NumPy memory of one write and one read-all (untimed; tracemalloc)."""
    atomic.remove(path)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with open_store(path, "w", backend=setting.backend, compression=setting.compression) as store:
            store.extend(images, labels=labels)
        write_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with open_store(path) as store:
            got = store.read_many()
            read_peak = tracemalloc.get_traced_memory()[1] - base
        del got
    finally:
        tracemalloc.stop()
    return {"write": int(write_peak), "read": int(read_peak)}


# ------------------------------------------------------------------ the run
def _same_labels(got: np.ndarray | None, want: np.ndarray | None) -> bool:
    return (want is None) == (got is None) and (want is None or bool(np.array_equal(want, got)))


def _peer_write(cell: dict[str, Any], images: Any, labels: Any) -> float:
    prepare_write(cell["path"])
    t0 = time.perf_counter()
    cell["adapter"].write(cell["path"], images, labels)
    return time.perf_counter() - t0


def _peer_read_all(cell: dict[str, Any]) -> tuple[float, Any, Any]:
    t0 = time.perf_counter()
    got, labels = cell["adapter"].read_all(cell["path"])
    return time.perf_counter() - t0, got, labels


def _peer_random(cell: dict[str, Any], indices: np.ndarray, images: Any) -> tuple[float, bool] | None:
    reader = cell["adapter"].open_random(cell["path"])
    if reader is None:
        return None
    try:
        out = [None] * len(indices)
        t0 = time.perf_counter()
        for k, i in enumerate(indices.tolist()):
            out[k] = reader[i]
        elapsed = time.perf_counter() - t0
    finally:
        reader.close()
    return elapsed, same_images(out, [images[i] for i in indices.tolist()])


def _repeat(cell: dict[str, Any], r: int, cache: str, images: Any, labels: Any, indices: np.ndarray) -> None:
    """Repeat ``r`` of one cell: a timed write, read-all and random reads, every read checked.

    A peer's cell (``cell["adapter"]``, :mod:`imgbench.measure.peers`) is timed the same way with
    its own writer and readers."""
    path, peer = cell["path"], cell.get("adapter") is not None
    cell["write_s"].append(_peer_write(cell, images, labels) if peer
                           else _time_write(path, cell["setting"], images, labels))
    if cache == "cold":
        evict(path)
    elapsed, got, got_labels = _peer_read_all(cell) if peer else _time_read_all(path)
    cell["read_s"].append(elapsed)
    problem = mismatch(got, images)
    if problem:
        cell["exact"] = False
        cell["mismatches"].append(f"repeat {r + 1}: read-all differs from what was written ({problem})")
    if not _same_labels(got_labels, labels):
        cell["exact"] = False
        cell["mismatches"].append(f"repeat {r + 1}: labels differ from what was written")
    del got
    if cache == "cold":
        evict(path)
    timed = _peer_random(cell, indices, images) if peer else _time_random(path, indices, images)
    if timed is None:  # the peer has no random-access reader installed: n/a, not zero
        return
    elapsed, ok = timed
    cell["random_s"].append(elapsed)
    if not ok:
        cell["exact"] = False
        cell["mismatches"].append(f"repeat {r + 1}: a random read differs from what was written")


def _peer_cells(plan: Plan, ds: Dataset, n: int, workdir: Path, indices: np.ndarray) -> list[dict[str, Any]]:
    """One cell per installed peer of ``plan.peers`` (a missing one is a note of the plan, not a cell)."""
    cells = []
    for name in plan.peers:
        adapter, _note = peers.load(name)
        if adapter is None:
            continue
        cells.append({
            "dataset": ds.name, "backend": peers.backend_name(name), "peer": True,
            "compression": adapter.COMPRESSION, "durability": adapter.DURABILITY,
            "count": n, "cache": plan.cache, "raw_bytes": ds.raw_bytes(n), "random_reads": len(indices),
            "status": "ok", "reason": None, "write_s": [], "read_s": [], "random_s": [],
            "exact": True, "mismatches": [], "path": workdir / f"{ds.name}-{n}-peer-{name}", "adapter": adapter,
        })
    return cells


def _peer_warm_up(cell: dict[str, Any], images: Any, labels: Any) -> None:
    """Untimed first pass of a peer (warm-up); a peer that cannot store these images is marked unsupported."""
    try:
        cell["adapter"].write(cell["path"], images, labels)
        cell["adapter"].read_all(cell["path"])
    except Exception as exc:  # noqa: BLE001  a peer's own error, whatever its type, is the row's reason
        cell["status"], cell["reason"] = "unsupported", f"{cell['backend']}: {type(exc).__name__}: {exc}"
    cell["peak_memory"] = None  # not traced for peers (litdata writes in a worker process)


def _measure_count(plan: Plan, ds: Dataset, n: int, workdir: Path, indices: np.ndarray,
                   step: Progress) -> list[dict[str, Any]]:
    """Every setting on the first ``n`` images of ``ds``: one result row per setting."""
    images = ds.images[:n]
    labels = None if ds.labels is None else ds.labels[:n]
    cells: list[dict[str, Any]] = [{
        "dataset": ds.name, "backend": s.backend, "compression": s.compression,
        "count": n, "cache": plan.cache, "raw_bytes": ds.raw_bytes(n), "random_reads": len(indices),
        "status": "ok", "reason": None, "write_s": [], "read_s": [], "random_s": [],
        "exact": True, "mismatches": [], "path": workdir / cell_name(ds.name, n, s), "setting": s,
    } for s in settings_of(plan.settings, ds)] + _peer_cells(plan, ds, n, workdir, indices)
    # Untimed first pass per cell: memory peak, warm-up, and unsupported combinations.
    for cell in cells:
        step(0, f"{ds.name} x{n} {_label(cell)} (warm-up)")
        if "adapter" in cell:
            _peer_warm_up(cell, images, labels)
        else:
            try:
                cell["peak_memory"] = _memory_pass(cell["path"], cell["setting"], images, labels)
            except UnsupportedError as exc:
                cell["status"], cell["reason"] = "unsupported", str(exc)
        step(1, "")
    for r, order in interleaved(cells, plan.repeats):
        for cell in order:
            if cell["status"] == "ok":
                step(0, f"{ds.name} x{n} {_label(cell)} ({r + 1}/{plan.repeats})")
                _repeat(cell, r, plan.cache, images, labels, indices)
            step(1, "")
    for cell in cells:
        path = cell.pop("path")
        cell.pop("setting", None)
        peer = cell.pop("adapter", None) is not None
        if cell["status"] == "ok":
            cell["disk"] = disk_usage(path)
            cell["level"] = None if peer else _level(path)
            _finish(cell)
        atomic.remove(path)
    return cells


def _label(cell: dict[str, Any]) -> str:
    return cell["setting"].label if "setting" in cell else f"{cell['backend']}/{cell['compression']}"


def _workdir(plan: Plan) -> Path:
    """A new folder for the run's stores: in ``plan.workdir`` when given, else in $TMPDIR."""
    if plan.workdir is None:
        return Path(tempfile.mkdtemp(prefix="imgbench-compare-"))
    Path(plan.workdir).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".imgbench-work-", dir=plan.workdir))


def run(plan: Plan, progress: Progress | None = None,
        on_dataset: Callable[[dict[str, Any], str], None] | None = None) -> dict[str, Any]:
    """Measure every cell of ``plan``; return the results document (what results.json holds).

    ``on_dataset(results, name)`` is called when a dataset is measured, with the document so far
    (its config, datasets and runs), so its tables can be shown before the rest of the run."""
    if plan.repeats < 1:
        raise CompareError("--repeats must be at least 1")
    if plan.cache not in ("warm", "cold"):
        raise CompareError(f"--cache is 'warm' or 'cold', not {plan.cache!r}")
    step = progress or no_progress
    rng = np.random.default_rng(plan.seed)
    rows: list[dict[str, Any]] = []
    with allocator_tuned() as allocator:
        started = _dt.datetime.now(_dt.timezone.utc)
        t_start = time.perf_counter()
        workdir = _workdir(plan)
        try:
            for ds in plan.datasets:
                for n in ds.counts:
                    indices = rng.choice(n, size=min(plan.random_reads, n), replace=False)
                    rows.extend(_measure_count(plan, ds, n, workdir, indices, step))
                if on_dataset is not None:
                    on_dataset({"config": _config(plan), "datasets": [d.describe() for d in plan.datasets],
                                "runs": rows, "notes": []}, ds.name)
            parallel = parallel_read.run(plan.datasets, plan.settings, workdir, plan.parallel_workers,
                                         repeats=plan.parallel_repeats or plan.repeats, cache=plan.cache,
                                         max_bytes=plan.parallel_max_bytes, progress=step)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "imgbench_results": RESULTS_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_start,
        "config": _config(plan),
        "method": {
            "timer": "time.perf_counter; medians of interleaved repeats, spread = (max - min) / median",
            "write": "os.sync() first; open(mode='w') + extend(images, labels) + close() (includes fsync and atomic publish)",
            "read_all": "open + read_many() + close" + (", page cache evicted first" if plan.cache == "cold" else ", warm page cache"),
            "random": "store[i] for distinct random indices on an open store" + (", page cache evicted first" if plan.cache == "cold" else ""),
            "peak_memory": "tracemalloc peak of Python/NumPy allocations above the baseline, separate untimed pass; "
                           "C-library buffers and memory-mapped pages are not counted",
            "verification": "every repeat compares read-all, labels and each random read with what was written",
            "parallel_read": parallel_read.METHOD if parallel else None,
            "peers": PEERS_METHOD if plan.peers else None,
            "allocator": allocator,
        },
        "machine": machine_info(workdir.parent),
        "versions": versions(),
        "datasets": [ds.describe() for ds in plan.datasets],
        "notes": list(plan.notes) + peers_notes(plan) + [f"{ds.name}: {note}" for ds in plan.datasets for note in ds.notes],
        "runs": rows,
        "parallel_read": parallel,
    }


def _config(plan: Plan) -> dict[str, Any]:
    """The run's settings as results.json records them."""
    return {
        "backends": sorted({s.backend for s in plan.settings}),
        "raw_reference": sorted({s.backend for s in plan.settings if registry.get(s.backend).raw_reference}),
        "settings": [s.label for s in plan.settings],
        "repeats": plan.repeats,
        "cache": plan.cache,
        "random_reads": plan.random_reads,
        "seed": plan.seed,
        "workdir": str(plan.workdir or tempfile.gettempdir()),
        "parallel_workers": list(plan.parallel_workers),
        "peers": list(plan.peers),
    }


#: how peers are measured (results.json ``method.peers``)
PEERS_METHOD = ("each peer's own writer and readers (imgbench.measure.peers), on the same images, in the same "
                "interleaved repeats, warm or cold alike; write = the peer's writer + fsync of every file and folder "
                "it wrote (no peer fsyncs by itself); read_all = open + the peer's sequential reader; random = the "
                "peer's random-access reader (n/a when it has none); every read checked; peak memory not traced")


def peers_notes(plan: Plan) -> list[str]:
    """One line per peer of the plan that is skipped (package missing) or has no random read installed."""
    notes = []
    for name in plan.peers:
        _adapter, note = peers.load(name)
        notes.append(note or peers.random_note(name))
    return [n for n in notes if n]


def _level(path: Path) -> Any:
    try:
        with open_store(path) as store:
            return store.level
    except ImgbenchError:
        return None


def _finish(cell: dict[str, Any]) -> None:
    """Add medians, spreads and derived figures (throughput, latency, size ratio) to a cell."""
    n, raw = cell["count"], cell["raw_bytes"]
    stats = {key: summarize(cell[key]) for key in ("write_s", "read_s", "random_s")}
    cell["stats"] = stats
    w, r = (stats[k]["median"] for k in ("write_s", "read_s"))
    q = stats["random_s"]["median"] if stats["random_s"] else None  # None: a peer without random access
    cell["derived"] = {
        "write_images_per_s": n / w if w > 0 else None,
        "read_images_per_s": n / r if r > 0 else None,
        "write_MB_per_s": raw / w / 1e6 if w > 0 else None,
        "read_MB_per_s": raw / r / 1e6 if r > 0 else None,
        "random_latency_us": q / cell["random_reads"] * 1e6 if q is not None and cell["random_reads"] else None,
        "size_ratio": cell["disk"]["allocated"] / raw if raw else None,
    }




def all_exact(results: dict[str, Any]) -> bool:
    """True when every measured run (and every parallel read) read back exactly what it wrote."""
    return all(r["exact"] for r in results["runs"] if r["status"] == "ok") and parallel_read.all_exact(
        results.get("parallel_read"))
