"""Reading at scale: aggregate images per second with 1, 2, ... worker processes reading one sharded dataset.

What ``imgbench compare`` adds after its matrix (``--parallel-workers``), and what
the asv benchmark ``bench_parallel_read`` times. Method (also written into
results.json):

- Per dataset (its largest count, or as many of its first images as fit in a
  byte budget: ``imgbench compare`` uses 16 MiB, 1 MiB with ``--quick``,
  none when ``--counts`` is given) and per measured backend/compression, the
  same images are written once as a sharded dataset
  (``imgbench.open(path, "w", images_per_shard=...)``) with twice as many
  shards as the least common multiple of the worker counts (at most
  :data:`MAX_SHARDS`): every worker count gets equal shares of whole shards,
  and every share spans several shards, as in a real dataset (a one-shard
  share would skip the copy that assembles a multi-shard read and inflate the
  speed-up).
- A pool of worker processes (plain :mod:`multiprocessing`, ``spawn``) is
  started once, before any timing; its start-up (interpreter, imports) is
  reported separately as ``startup_s``.
- One read with ``k`` workers: worker ``j`` gets a contiguous block of shards,
  waits on a barrier shared by the ``k`` workers, then opens the dataset by path
  itself and reads its share with ``read_many``. The time is from the first
  worker leaving the barrier to the last worker done (``CLOCK_MONOTONIC``,
  system-wide on Linux, so the workers' timestamps compare). Images per second
  = images / that time.
- After its clock stops each worker fingerprints what it read (xxh3-64 of every
  image's bytes, seeded with its dtype and shape) and sends only the
  fingerprints back; the parent compares them with those of the images it
  wrote. Any difference, a missing image or a worker error marks the run not
  exact (``imgbench compare`` then exits 1).
- An untimed warm-up first: every process touches the memory the largest
  share needs (first touch of fresh memory is slow on VMs) and reads each
  dataset once (imports the backend, warms the page cache); then interleaved
  repeats: repeat 1 of every
  setting and worker count, then repeat 2, ... Medians are quoted; speed-up is
  the images/s with ``k`` workers over that with the fewest workers measured,
  efficiency the speed-up over the ideal (linear) one.
- Each worker opens the dataset with the backend's default options, so codecs
  that decode on threads (PNG, zstd) use them: ``cpu_cores`` (CPU time / wall
  time per worker) shows when one worker already uses more than one core.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_any
from pathlib import Path
from typing import Any

import numpy as np

from imgbench import sharded
from imgbench.api import open as open_store
from imgbench.core import checksum
from imgbench.core.errors import ImgbenchError, UnsupportedError
from imgbench.core.parallel import default_threads
from imgbench.measure.harness import Progress, evict, interleaved, no_progress, summarize, tune_allocator
from imgbench.measure.matrix import CompareError, Dataset, Setting, cell_name, settings_of

#: start method of the reader processes: spawn is safe whatever threads the parent runs (a progress bar)
START_METHOD = "spawn"
#: shards per worker at the largest common split: every read then assembles its share from several shards, as a
#: worker of a real (many-shard) dataset does, so the speed-up is not inflated by one-shard reads skipping that copy
SHARDS_PER_WORKER = 2
#: shards of a measured dataset: SHARDS_PER_WORKER x lcm of the worker counts, capped here (then shares differ by at
#: most one shard)
MAX_SHARDS = 64
#: most reader processes one measurement starts
MAX_WORKERS = 256
#: seconds a worker waits on the barrier for its peers before giving up
BARRIER_TIMEOUT = 120.0
#: seconds the pool may take to start
START_TIMEOUT = 120.0
#: what results.json says about this measurement
METHOD = (
    "a sharded copy of the images (shards = 2 x lcm of the worker counts) read by k worker processes started "
    "beforehand (spawn; start-up reported apart); each opens the dataset by path and read_many()s a contiguous "
    "block of shards; time from the barrier release to the last worker done; medians of interleaved repeats "
    "after an untimed warm-up; every image checked (xxh3-64 of dtype, shape and bytes)"
)

_clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every process on the machine


class ParallelReadError(ImgbenchError):
    """The reader processes could not run (died, did not start, or never met at the barrier)."""


# ------------------------------------------------------------------ planning
def default_workers(cores: int | None = None) -> list[int]:
    """1, 2, ... up to the core count (powers of two and the core count beyond 4 cores)."""
    cores = default_threads() if cores is None else max(1, int(cores))
    if cores <= 4:
        return list(range(1, cores + 1))
    counts = [1 << p for p in range(cores.bit_length()) if 1 << p < cores]
    return counts + [cores]


def parse_workers(values: Sequence[str | int] | None) -> list[int]:
    """``["1", "2,4"]`` -> ``[1, 2, 4]``; None -> :func:`default_workers`; ``["0"]`` -> ``[]`` (not measured)."""
    if values is None:
        return default_workers()
    counts: set[int] = set()
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                number = int(part)
            except ValueError:
                raise CompareError(
                    f"--parallel-workers takes whole numbers of processes such as 1 2 4 (0: skip), got {part!r}"
                ) from None
            if number < 0:
                raise CompareError(f"--parallel-workers takes numbers of at least 1 (0: skip), got {part!r}")
            if number > MAX_WORKERS:
                raise CompareError(f"--parallel-workers: at most {MAX_WORKERS} processes, got {number}")
            counts.add(number)
    if not counts:
        raise CompareError("--parallel-workers needs at least one number (0: skip the parallel-read measurement)")
    if counts == {0}:
        return []
    if 0 in counts:
        raise CompareError("--parallel-workers 0 skips the measurement; it cannot be combined with other counts")
    return sorted(counts)


def shard_count(workers: Sequence[int]) -> int:
    """Shards to write: every worker count gets equal shares of at least two whole shards, at most MAX_SHARDS."""
    return min(SHARDS_PER_WORKER * math.lcm(*workers), MAX_SHARDS) if workers else 1


def shares(bounds: Sequence[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """Index range ``(start, stop)`` per worker: ``k`` contiguous blocks of whole shards (empty when shards < k)."""
    out = []
    for j in range(k):
        block = bounds[j * len(bounds) // k:(j + 1) * len(bounds) // k]
        out.append((block[0][0], block[-1][1]) if block else (0, 0))
    return out


def count_within(ds: Dataset, max_bytes: int | None) -> int:
    """Images of ``ds`` to read in parallel: its largest count, or its first images within ``max_bytes`` (>= 1)."""
    n = max(ds.counts)
    if max_bytes is None or ds.raw_bytes(n) <= max_bytes:
        return n
    if isinstance(ds.images, np.ndarray):
        return max(1, min(n, max_bytes // max(1, ds.images[0].nbytes)))
    sizes = np.cumsum([im.nbytes for im in ds.images[:n]])
    return max(1, int(np.searchsorted(sizes, max_bytes, side="right")))


def steps(datasets: Sequence[Dataset], settings: Sequence[Setting], workers: Sequence[int], repeats: int) -> int:
    """Progress units of :func:`run`: per dataset and setting, one for the build and warm-up, one per repeat."""
    return sum(len(settings_of(settings, ds)) for ds in datasets) * (1 + repeats) if workers else 0


# --------------------------------------------------------------- checking
def _layout_seed(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{np.dtype(dtype).str}{tuple(shape)}".encode())


def fingerprints(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """One uint64 per image covering its dtype, shape and every value (what workers send back instead of pixels)."""
    if isinstance(images, np.ndarray):
        seeds = [_layout_seed(images.dtype, images.shape[1:])] * len(images)
    else:
        seeds = [_layout_seed(im.dtype, im.shape) for im in images]
    return checksum.digests(images, np.array(seeds, np.uint64).view(np.int64))


def read_share(path: str, start: int, stop: int) -> np.ndarray | list[np.ndarray]:
    """A worker's timed work: open the dataset by path and ``read_many`` images ``start..stop-1``."""
    with open_store(path) as store:
        return store.read_many(range(start, stop))


Reader = Callable[[str, int, int], Any]


# ------------------------------------------------------------------- workers
def _serve(conn: Any, barriers: dict[int, Any]) -> None:
    """A worker process: report ready, then run one read per task until told to stop (None)."""
    tune_allocator(True)  # outputs reuse memory already faulted in, as in the parent's measurements
    conn.send({"ready": os.getpid()})
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            if "prefault" in task:
                np.ones(task["prefault"], np.uint8)  # faulted in, freed, kept by the tuned allocator for reuse
                conn.send({"prefault": task["prefault"]})
                continue
            conn.send(_one_read(task, barriers[task["k"]]))
        except Exception as exc:  # reported to the parent, which marks the run not exact
            conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _one_read(task: dict[str, Any], barrier: Any) -> dict[str, Any]:
    reader: Reader = task["reader"]
    barrier.wait(BARRIER_TIMEOUT)
    start, cpu = _clock(), time.process_time()
    images = reader(task["path"], task["start"], task["stop"])
    end, cpu = _clock(), time.process_time() - cpu
    return {"start": start, "end": end, "cpu_s": cpu, "images": len(images), "fingerprints": fingerprints(images)}


class ReaderPool:
    """``processes`` reader processes started once (before any timing) and reused for every read.

    ``startup_s`` is how long starting them took (interpreters and imports):
    the cost a user pays once per job, reported apart from the reads.
    """

    def __init__(self, processes: int, start_method: str = START_METHOD):
        if processes < 1:
            raise ParallelReadError(f"a reader pool needs at least one process, got {processes}")
        ctx = multiprocessing.get_context(start_method)
        self.start_method = start_method
        self.barriers = {k: ctx.Barrier(k) for k in range(1, processes + 1)}
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        t0 = _clock()
        try:
            for j in range(processes):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, self.barriers), name=f"imgbench-reader-{j}",
                                   daemon=True)
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
            self._collect(range(processes), START_TIMEOUT, "start")
        except BaseException:
            self.close()
            raise
        self.startup_s = _clock() - t0

    def __enter__(self) -> ReaderPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _collect(self, which: Sequence[int], timeout: float | None, what: str) -> list[Any]:
        """One message from each worker in ``which``; ParallelReadError when one dies or time runs out."""
        got: dict[int, Any] = {}
        deadline = None if timeout is None else _clock() + timeout
        while len(got) < len(which):
            left = None if deadline is None else max(0.0, deadline - _clock())
            waiting = {self.conns[j]: j for j in which if j not in got}
            ready = wait_any(list(waiting) + [self.procs[j].sentinel for j in waiting.values()], left)
            if not ready:
                raise ParallelReadError(f"reader processes did not {what} within {timeout:.0f} s")
            for obj in ready:
                if obj in waiting:
                    try:
                        got[waiting[obj]] = obj.recv()
                    except EOFError:
                        pass  # the process is gone: its sentinel reports it below
            for j in waiting.values():
                if j not in got and not self.procs[j].is_alive():
                    hint = ""
                    if what == "start" and self.start_method != "fork":
                        hint = (f"; with the {self.start_method} start method each process imports the main module "
                                "again: a script that measures must keep its work under "
                                "`if __name__ == \"__main__\":`")
                    raise ParallelReadError(
                        f"reader process {j} died (exit code {self.procs[j].exitcode}) during {what}{hint}"
                    )
        return [got[j] for j in which]

    def prefault(self, nbytes: int) -> None:
        """Have every worker touch ``nbytes`` of fresh memory once: timed reads reuse it (first touch is slow on VMs)."""
        for conn in self.conns:
            conn.send({"prefault": int(nbytes)})
        self._collect(range(len(self.procs)), None, "prefault")

    def read(self, path: str | os.PathLike, ranges: Sequence[tuple[int, int]],
             reader: Reader = read_share) -> list[dict[str, Any]]:
        """One parallel read: worker ``j`` reads ``ranges[j]``; returns each worker's report, in order.

        A report is ``{"start", "end", "cpu_s", "images", "fingerprints"}`` or
        ``{"error": text}`` when the worker's read raised.
        """
        k = len(ranges)
        if not 1 <= k <= len(self.procs):
            raise ParallelReadError(f"{k} shares for a pool of {len(self.procs)} reader processes")
        for j, (start, stop) in enumerate(ranges):
            self.conns[j].send({"k": k, "path": os.fspath(path), "start": int(start), "stop": int(stop),
                                "reader": reader})
        reports = self._collect(range(k), None, "read")
        if any("error" in r for r in reports):
            self.barriers[k].reset()  # a worker that failed before the barrier left the others waiting
        return reports

    def close(self) -> None:
        """Stop the workers (politely, then by force after a few seconds)."""
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []


def elapsed(reports: Sequence[dict[str, Any]]) -> float:
    """Aggregate read time of one parallel read: first worker released by the barrier to the last one done."""
    return max(r["end"] for r in reports) - min(r["start"] for r in reports)


def median_read_s(pool: ReaderPool, path: str | os.PathLike, ranges: Sequence[tuple[int, int]], repeats: int) -> float:
    """Median aggregate time of ``repeats`` parallel reads of ``ranges`` (for benchmarks: timed, not checked)."""
    times = []
    for _ in range(repeats):
        reports = pool.read(path, ranges)
        failed = [r["error"] for r in reports if "error" in r]
        if failed:
            raise ParallelReadError(f"a reader process failed: {failed[0]}")
        times.append(elapsed(reports))
    return statistics.median(times)


def check(reports: Sequence[dict[str, Any]], ranges: Sequence[tuple[int, int]], expected: np.ndarray) -> list[str]:
    """What differs between the workers' reports and the fingerprints of the images written (empty: exact)."""
    problems = []
    for j, (report, (start, stop)) in enumerate(zip(reports, ranges)):
        if "error" in report:
            problems.append(f"worker {j} failed: {report['error']}")
            continue
        got, want = report["fingerprints"], expected[start:stop]
        if report["images"] != stop - start or len(got) != len(want):
            problems.append(f"worker {j} read {report['images']} images of its {stop - start} ({start}..{stop - 1})")
            continue
        bad = np.flatnonzero(got != want)
        if bad.size:
            problems.append(f"worker {j}: image {start + int(bad[0])} differs from what was written "
                            f"(dtype, shape or values; {bad.size} of {stop - start} images)")
    return problems


# ----------------------------------------------------------------- measuring
def build(path: str | os.PathLike, images: Any, labels: np.ndarray | None, backend: str, compression: str | None,
          shards: int) -> list[tuple[int, int]]:
    """Write ``images`` as a sharded dataset of (at most) ``shards`` shards; return :func:`shard_bounds`."""
    per_shard = max(1, -(-len(images) // shards))
    with open_store(path, "w", backend=backend, compression=compression, images_per_shard=per_shard) as store:
        store.extend(images, labels=labels)
    return shard_bounds(path)


def shard_bounds(path: str | os.PathLike) -> list[tuple[int, int]]:
    """Index range ``(start, stop)`` of each shard of the sharded dataset at ``path``, from its manifest."""
    counts = [entry["count"] for entry in sharded.read_manifest(Path(path))["shards"]]
    ends = np.cumsum(counts, dtype=np.int64).tolist()
    return [(end - c, end) for end, c in zip(ends, counts)]


def _measure(pool: ReaderPool, cell: dict[str, Any], k: int, reader: Reader, record: bool, label: str) -> None:
    ranges = shares(cell["bounds"], k)
    reports = pool.read(cell["path"], ranges, reader)
    problems = check(reports, ranges, cell["expected"])
    if problems:
        cell["exact"] = False
        cell["mismatches"].extend(f"{label}, {k} workers: {p}" for p in problems)
    if not record or problems:
        return
    run = cell["by_workers"][k]
    run["elapsed_s"].append(elapsed(reports))
    run["per_worker"].append([
        {"images": r["images"], "elapsed_s": r["end"] - r["start"], "cpu_s": r["cpu_s"]} for r in reports
    ])


def finish(cell: dict[str, Any]) -> None:
    """Medians, images/s, MB/s, speed-up and efficiency per worker count, from the recorded samples."""
    n, raw = cell["count"], cell["raw_bytes"]
    rows = []
    for k, run in sorted(cell["by_workers"].items()):
        stats = summarize(run["elapsed_s"])
        med = stats["median"] if stats else None
        ratios = [w["cpu_s"] / w["elapsed_s"] for rep in run["per_worker"] for w in rep if w["elapsed_s"] > 0]
        rows.append({
            "workers": k,
            "elapsed_s": run["elapsed_s"],
            "per_worker": run["per_worker"],
            "stats": stats,
            "images_per_s": n / med if med else None,
            "MB_per_s": raw / med / 1e6 if med else None,
            "cpu_cores": statistics.median(ratios) if ratios else None,
        })
    base = rows[0] if rows else None
    for row in rows:
        ok = base is not None and base["images_per_s"] and row["images_per_s"]
        row["speedup"] = row["images_per_s"] / base["images_per_s"] if ok else None
        row["efficiency"] = row["speedup"] / (row["workers"] / base["workers"]) if ok else None
    cell["by_workers"] = rows


def _measure_all(pool: ReaderPool, cells: list[dict[str, Any]], workers: list[int], repeats: int, cache: str,
                 reader: Reader, step: Progress) -> float:
    """Untimed warm-up, then interleaved repeats; returns the warm-up's duration.

    The warm-up has every process touch the memory the largest share needs
    (the output and the shards' parts it is assembled from; first touch of
    fresh memory is slow on VMs) and reads each dataset with every process
    (each imports the backend and runs its code once; the page cache fills).
    """
    t0 = _clock()
    pool.prefault(2 * max(cell["raw_bytes"] for cell in cells))
    for cell in cells:
        _measure(pool, cell, max(workers), reader, record=False, label="warm-up")
        step(1, "")
    warmup_s = _clock() - t0
    for r, order in interleaved(cells, repeats):
        for cell in order:
            step(0, f"{cell['dataset']} {cell['backend']}/{cell['compression']} parallel ({r + 1}/{repeats})")
            for k in workers:
                if cache == "cold":
                    evict(cell["path"])
                _measure(pool, cell, k, reader, record=True, label=f"repeat {r + 1}")
            step(1, "")
    return warmup_s


def run(
    datasets: Sequence[Dataset],
    settings: Sequence[Setting],
    workdir: Path,
    workers: Sequence[int],
    *,
    repeats: int,
    cache: str = "warm",
    progress: Progress | None = None,
    max_bytes: int | None = None,
    reader: Reader | None = None,
    start_method: str = START_METHOD,
) -> dict[str, Any] | None:
    """Measure parallel reads of every dataset x setting; the ``parallel_read`` part of results.json.

    Each dataset is read at its largest count, or its first images within
    ``max_bytes`` raw bytes (:func:`count_within`). Returns None when
    ``workers`` is empty (not measured). ``reader`` is the
    worker's timed call, a module-level function (default :func:`read_share`;
    tests substitute one that reads wrong data).
    """
    if not workers:
        return None
    began = _clock()
    if repeats < 1:
        raise CompareError("--repeats must be at least 1")
    step = progress or no_progress
    reader = reader or read_share
    workers = sorted(set(workers))
    nshards = shard_count(workers)
    cells: list[dict[str, Any]] = []
    try:
        for ds in datasets:
            n = count_within(ds, max_bytes)
            images = ds.images[:n]
            labels = None if ds.labels is None else ds.labels[:n]
            expected = fingerprints(images)
            for s in settings_of(settings, ds):
                step(0, f"{ds.name} x{n} {s.label} (sharded, parallel)")
                cell: dict[str, Any] = {
                    "dataset": ds.name, "backend": s.backend, "compression": s.compression, "count": n,
                    "raw_bytes": ds.raw_bytes(n), "cache": cache, "status": "ok", "reason": None, "exact": True,
                    "mismatches": [], "by_workers": {k: {"elapsed_s": [], "per_worker": []} for k in workers},
                    "path": workdir / f"{cell_name(ds.name, n, s)}-sharded",
                    "expected": expected,
                }
                try:
                    cell["bounds"] = build(cell["path"], images, labels, s.backend, s.compression, nshards)
                    cell["shards"] = len(cell["bounds"])
                except UnsupportedError as exc:
                    cell["status"], cell["reason"] = "unsupported", str(exc)
                cells.append(cell)
        live = [c for c in cells if c["status"] == "ok"]
        startup_s = warmup_s = None
        if live:
            with ReaderPool(max(workers), start_method) as pool:
                startup_s = pool.startup_s
                warmup_s = _measure_all(pool, live, workers, repeats, cache, reader, step)
        for cell in cells:
            if cell["status"] != "ok":
                step(1 + repeats, "")
    finally:
        for cell in cells:
            shutil.rmtree(cell.pop("path"), ignore_errors=True)
            cell.pop("expected")
            cell.pop("bounds", None)
    for cell in cells:
        if cell["status"] == "ok":
            finish(cell)
        else:
            cell["by_workers"] = []
    return {
        "workers": workers,
        "processes": max(workers),
        "start_method": start_method,
        "startup_s": startup_s,
        "warmup_s": warmup_s,
        "elapsed_s": _clock() - began,
        "shards": nshards,
        "repeats": repeats,
        "max_bytes": max_bytes,
        "cache": cache,
        "method": METHOD,
        "runs": cells,
    }


def all_exact(section: dict[str, Any] | None) -> bool:
    """True when every parallel read returned exactly the images written (or nothing was measured)."""
    return section is None or all(r["exact"] for r in section["runs"] if r["status"] == "ok")
