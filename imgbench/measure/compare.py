"""The comparison matrix behind ``imgbench compare``: every backend x setting x image count.

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
  is told to keep and reuse freed memory (``mallopt``), so timings measure
  storage, not page faults; its defaults are restored afterwards.
  results.json records whether that took effect.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import os
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imgbench import __version__
from imgbench.adapters import datasets
from imgbench.api import open as open_store
from imgbench.core.errors import ImgbenchError, UnsupportedError
from imgbench.core.usage import disk_usage
from imgbench.storage import registry
from imgbench.storage.registry import backends as all_backends

#: schema of results.json; bump when its meaning changes
RESULTS_VERSION = 1
#: Default counts are 10, 100, 1000 while the largest store holds at most DEFAULT_BUDGET
#: raw bytes: measured on 2 cores, this keeps a default ``imgbench compare`` (4 passes of
#: every backend x 2 settings) near one minute. 10,000 CIFAR images doubles it: most of
#: the time goes to creating and deleting 10,000 files per pass of the disk backend.
DEFAULT_BUDGET = 64 << 20
QUICK_BUDGET = 8 << 20
#: pixels read from a --source folder by default (user images are often large)
SOURCE_BUDGET = 64 << 20
MAX_DEFAULT_COUNT = 1_000
QUICK_MAX_COUNT = 1_000
DEFAULT_REPEATS = 5
DEFAULT_RANDOM_READS = 1_000
#: Parallel reads (imgbench.parallel_read) add ~11% to a default run (measured on 2 cores): 3 repeats unless
#: --repeats is given, and without --counts at most this many raw bytes per dataset (32 of the 100 CT slices).
DEFAULT_PARALLEL_REPEATS = 3
PARALLEL_BUDGET = 16 << 20
QUICK_PARALLEL_BUDGET = 1 << 20
#: preferred second ("compressed") setting when a backend offers it: the same fast
#: codec everywhere makes the backends comparable; else the first non-default one.
PREFERRED_COMPRESSED = "zstd"


class CompareError(ImgbenchError):
    """A comparison that cannot be planned as asked (bad option values)."""


@dataclass
class Dataset:
    """Images to compare on: the first ``n`` of ``images`` for each ``n`` in ``counts``."""

    name: str
    about: str
    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    counts: list[int]
    source: str = "builtin"
    notes: list[str] = field(default_factory=list)

    def raw_bytes(self, n: int) -> int:
        if isinstance(self.images, np.ndarray):
            return int(self.images[:n].nbytes)
        return int(sum(im.nbytes for im in self.images[:n]))

    def describe(self) -> dict[str, Any]:
        first = self.images[:max(self.counts)]
        kinds: dict[str, int] = {}
        for im in (first if isinstance(first, list) else [first[0]] * len(first)):
            key = f"{'x'.join(map(str, im.shape))} {im.dtype}"
            kinds[key] = kinds.get(key, 0) + 1
        return {
            "name": self.name,
            "about": self.about,
            "source": self.source,
            "images": len(self.images),
            "counts": self.counts,
            "labelled": self.labels is not None,
            "shapes": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:10]),
            "raw_bytes_largest": self.raw_bytes(max(self.counts)),
            "notes": self.notes,
        }


@dataclass
class Setting:
    backend: str
    compression: str

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.compression}"


@dataclass
class Plan:
    datasets: list[Dataset]
    settings: list[Setting]
    repeats: int = DEFAULT_REPEATS
    cache: str = "warm"
    random_reads: int = DEFAULT_RANDOM_READS
    workdir: Path | None = None
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    #: worker counts of the parallel-read measurement (:mod:`imgbench.parallel_read`); empty: not measured
    parallel_workers: list[int] = field(default_factory=list)
    #: timed repeats of each parallel read (None: ``repeats``)
    parallel_repeats: int | None = None
    #: raw bytes of each dataset read in parallel at most (None: its largest count)
    parallel_max_bytes: int | None = None

    def steps(self) -> int:
        """Progress units: one per pass (warm-up + repeats) of each cell, plus the parallel reads."""
        from imgbench.measure import parallel_read

        cells = sum(len(d.counts) for d in self.datasets) * len(self.settings)
        return cells * (self.repeats + 1) + parallel_read.steps(
            self.datasets, self.settings, self.parallel_workers, self.parallel_repeats or self.repeats)


# ------------------------------------------------------------------ planning
def parse_counts(values: Sequence[str | int]) -> list[int]:
    """``["10", "1e3", "10,100"]`` -> sorted distinct positive ints."""
    counts = set()
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                number = float(part)
            except ValueError:
                raise CompareError(f"--counts takes whole numbers such as 10 100 1000, got {part!r}") from None
            if number < 1 or number != int(number):
                raise CompareError(f"--counts takes whole numbers of at least 1, got {part!r}")
            counts.add(int(number))
    if not counts:
        raise CompareError("--counts needs at least one number")
    return sorted(counts)


def default_counts(bytes_per_image: int, budget: int, max_count: int, available: int | None = None) -> list[int]:
    """Counts 10, 100, 1000, ... while the largest store holds at most ``budget`` raw bytes."""
    limit = min(max_count, available if available is not None else max_count)
    limit = max(1, min(limit, budget // max(1, bytes_per_image)))
    counts = []
    n = 10
    while n <= limit:
        counts.append(n)
        n *= 10
    if available is not None and (not counts or counts[-1] < limit):
        counts.append(limit)  # a user's folder: include all of it (within the budget)
    return counts or [limit]


def settings_for(backends: Sequence[str] | None = None, compressions: Sequence[str] | None = None) -> list[Setting]:
    """Backend x compression pairs: by default each backend's default and one compressed setting."""
    known = all_backends()
    chosen = list(dict.fromkeys(backends)) if backends else known
    for name in chosen:
        if name not in known:
            raise CompareError(f"unknown backend {name!r}; choose from: {', '.join(known)}")
    offered = {name: tuple(registry.get(name).compressions) for name in chosen}
    settings: list[Setting] = []
    if compressions:
        wanted = list(dict.fromkeys(compressions))
        everywhere = {c for comps in offered.values() for c in comps} | {"default"}
        for c in wanted:
            if c not in everywhere:
                raise CompareError(
                    f"no chosen backend offers compression {c!r}; offered: "
                    + "; ".join(f"{b}: {', '.join(cs)}" for b, cs in offered.items())
                )
        for name in chosen:
            picks = [offered[name][0] if c == "default" else c for c in wanted]
            for c in dict.fromkeys(p for p in picks if p in offered[name]):
                settings.append(Setting(name, c))
    else:
        for name in chosen:
            comps = offered[name]
            default = comps[0]
            others = list(comps[1:])
            compressed = [c for c in others if c != "none"]
            if default != "none" and "none" in others:
                second = "none"  # the default already compresses: compare with raw
            elif PREFERRED_COMPRESSED in compressed:
                second = PREFERRED_COMPRESSED
            else:
                second = compressed[0] if compressed else (others[0] if others else None)
            settings.append(Setting(name, default))
            if second is not None:
                settings.append(Setting(name, second))
    if not settings:
        raise CompareError("nothing to compare: no backend offers the chosen compressions")
    return settings


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise CompareError(f"a shape looks like 64x64x3 or 256x256, got {text!r}") from None
    if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] > 4):
        raise CompareError(f"a shape is HxW or HxWxC with C of 1 to 4, got {text!r}")
    return shape


def builtin_dataset(
    spec: str, counts: Sequence[int] | None = None, *, quick: bool = False, seed: int = 0
) -> Dataset:
    """A built-in dataset, ``NAME`` or ``NAME:SHAPE`` (e.g. ``cifar``, ``ct:256x256``, ``cifar:64x64x3``)."""
    name, _, shape_text = spec.partition(":")
    if name not in datasets.BUILTIN:
        raise CompareError(f"unknown dataset {name!r}; choose from: {', '.join(datasets.BUILTIN)} (NAME[:HxW[xC]])")
    info = datasets.BUILTIN[name]
    shape = _parse_shape(shape_text) if shape_text else tuple(info["shape"])
    if info["kind"] == "ct_slices" and len(shape) != 2:
        raise CompareError(f"{name} images are 2-D slices: give HxW, not {shape_text}")
    itemsize = 2 if info["kind"] == "ct_slices" else 1
    per_image = int(np.prod(shape)) * itemsize
    if counts:
        counts = sorted(counts)
    else:
        counts = default_counts(
            per_image,
            QUICK_BUDGET if quick else DEFAULT_BUDGET,
            QUICK_MAX_COUNT if quick else MAX_DEFAULT_COUNT,
        )
    n = max(counts)
    if info["kind"] == "photos":
        images = datasets.photos(n, shape=shape, seed=seed)
    else:
        images = datasets.ct_slices(n, shape=shape, seed=seed)
    about = info["about"] if not shape_text else f"{info['kind'].replace('_', ' ')}, {shape_text} {images.dtype}"
    return Dataset(
        name=spec, about=about, images=images, labels=datasets.labels(n, seed=seed), counts=list(counts)
    )


def source_dataset(folder: str | os.PathLike, counts: Sequence[int] | None = None, *, quick: bool = False) -> Dataset:
    """The user's own images from ``folder`` (see :mod:`imgbench.adapters.sources`)."""
    from imgbench.adapters import sources

    budget = QUICK_BUDGET if quick else SOURCE_BUDGET
    max_count = QUICK_MAX_COUNT if quick else MAX_DEFAULT_COUNT
    if counts:
        loaded = sources.load(folder, max_images=max(counts))
    else:
        loaded = sources.load(folder, max_images=max_count, max_bytes=budget)
    images = loaded.images
    notes = list(loaded.warnings)
    n = len(images)
    if counts:
        usable = sorted(c for c in counts if c <= n)
        if len(usable) < len(counts):
            notes.append(f"only {n} images in the folder: counts above {n} replaced by {n}")
            usable = sorted(set(usable) | {n})
        counts = usable
    else:
        per_image = max(1, sum(im.nbytes for im in images) // n)
        counts = default_counts(per_image, budget, max_count, available=n)
        if loaded.truncated:
            notes.append(
                f"read the first {n} images of the folder (a {budget >> 20} MiB budget); "
                "pass --counts to measure more"
            )
    stacked: np.ndarray | list[np.ndarray] = images
    if all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        stacked = np.stack(images)
    name = Path(os.fspath(folder)).expanduser().resolve().name or "source"
    kinds = sorted({f"{im.dtype}" for im in images})
    about = f"your images from {folder} ({n} images, {', '.join(kinds)}" + (
        f", {len(loaded.classes)} classes)" if loaded.classes else ")"
    )
    return Dataset(
        name=name, about=about, images=stacked, labels=loaded.labels, counts=counts,
        source=str(folder), notes=notes,
    )


# ----------------------------------------------------------------- machinery
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def _mallopt(trim: int, mmap_max: int) -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim) and libc.mallopt(_M_MMAP_MAX, mmap_max))


def tune_allocator(on: bool = True) -> dict[str, Any]:
    """Ask glibc to keep freed memory for reuse (``on``), or restore its defaults.

    Freshly mapped memory is slow to touch on many VMs; without this a timed
    read of a 30 MB array mostly measures page faults, not storage.
    """
    try:
        ok = _mallopt(2**31 - 1, 0) if on else _mallopt(128 * 1024, 65536)
    except (OSError, AttributeError) as exc:
        return {"mallopt": False, "detail": f"not glibc ({exc}); freshly allocated memory may add page-fault time"}
    return {
        "mallopt": ok,
        "detail": "glibc M_MMAP_MAX=0 and M_TRIM_THRESHOLD=2 GiB during the run: freed memory is reused, not unmapped"
        if ok else "mallopt refused; freshly allocated memory may add page-fault time",
    }


def evict(path: str | os.PathLike) -> int:
    """Drop a store's files from the page cache (fsync, then POSIX_FADV_DONTNEED); returns files evicted."""
    root = Path(os.fspath(path))
    files = [root] if root.is_file() else [Path(d) / n for d, _, ns in os.walk(root) for n in ns]
    done = 0
    for f in files:
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            done += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return done


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def same_images(got: Any, want: np.ndarray | list[np.ndarray]) -> bool:
    """True when ``got`` holds exactly the images of ``want``: count, dtype, shape and values."""
    if isinstance(got, np.ndarray) and isinstance(want, np.ndarray):
        return got.dtype == want.dtype and got.shape == want.shape and bool(np.array_equal(got, want))
    if len(got) != len(want):
        return False
    return all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, want)
    )


def summarize(values: Sequence[float]) -> dict[str, float] | None:
    """Median and spread of the repeats (medians are what we quote on a noisy machine)."""
    if not values:
        return None
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med > 0 else 0.0,
        "n": len(values),
    }


def _time_write(path: Path, setting: Setting, images: Any, labels: Any) -> float:
    _remove(path)
    os.sync()
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
    exact = all(
        im.dtype == images[i].dtype and im.shape == images[i].shape and np.array_equal(im, images[i])
        for im, i in zip(out, indices.tolist())
    )
    return elapsed, exact


def _memory_pass(path: Path, setting: Setting, images: Any, labels: Any) -> dict[str, int]:
    """Peak extra Python/NumPy memory of one write and one read-all (untimed; tracemalloc)."""
    _remove(path)
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


Progress = Callable[[int, str], None]


def run(plan: Plan, progress: Progress | None = None) -> dict[str, Any]:
    """Measure every cell of ``plan``; return the results document (what results.json holds)."""
    if plan.repeats < 1:
        raise CompareError("--repeats must be at least 1")
    if plan.cache not in ("warm", "cold"):
        raise CompareError(f"--cache is 'warm' or 'cold', not {plan.cache!r}")
    from imgbench.measure import parallel_read

    allocator = tune_allocator(True)
    started = _dt.datetime.now(_dt.timezone.utc)
    t_start = time.perf_counter()
    own_workdir = plan.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="imgbench-compare-")) if own_workdir else Path(plan.workdir)
    if not own_workdir:
        workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".imgbench-work-", dir=workdir))
    rng = np.random.default_rng(plan.seed)
    rows: list[dict[str, Any]] = []
    step = progress or (lambda n, text: None)
    try:
        for ds in plan.datasets:
            for n in ds.counts:
                images = ds.images[:n]
                labels = None if ds.labels is None else ds.labels[:n]
                k = min(plan.random_reads, n)
                indices = rng.choice(n, size=k, replace=False)
                cells: list[dict[str, Any]] = []
                for s in plan.settings:
                    cells.append({
                        "dataset": ds.name, "backend": s.backend, "compression": s.compression,
                        "count": n, "cache": plan.cache, "raw_bytes": ds.raw_bytes(n), "random_reads": k,
                        "status": "ok", "reason": None, "write_s": [], "read_s": [], "random_s": [],
                        "exact": True, "mismatches": [],
                        "path": workdir / f"{_safe(ds.name)}-{n}-{s.backend}-{s.compression}",
                        "setting": s,
                    })
                # Untimed first pass per cell: memory peak, warm-up, and unsupported combinations.
                for cell in cells:
                    s = cell["setting"]
                    step(0, f"{ds.name} x{n} {s.label} (warm-up)")
                    try:
                        mem = _memory_pass(cell["path"], s, images, labels)
                        cell["peak_memory"] = mem
                    except UnsupportedError as exc:
                        cell["status"], cell["reason"] = "unsupported", str(exc)
                    step(1, "")
                for r in range(plan.repeats):
                    for cell in cells:
                        s = cell["setting"]
                        if cell["status"] != "ok":
                            step(1, "")
                            continue
                        step(0, f"{ds.name} x{n} {s.label} ({r + 1}/{plan.repeats})")
                        path = cell["path"]
                        cell["write_s"].append(_time_write(path, s, images, labels))
                        if plan.cache == "cold":
                            evict(path)
                        elapsed, got, got_labels = _time_read_all(path)
                        cell["read_s"].append(elapsed)
                        if not same_images(got, images):
                            cell["exact"] = False
                            cell["mismatches"].append(f"repeat {r + 1}: read-all differs from what was written")
                        if (labels is None) != (got_labels is None) or (
                            labels is not None and not np.array_equal(labels, got_labels)
                        ):
                            cell["exact"] = False
                            cell["mismatches"].append(f"repeat {r + 1}: labels differ from what was written")
                        del got
                        if plan.cache == "cold":
                            evict(path)
                        elapsed, ok = _time_random(path, indices, images)
                        cell["random_s"].append(elapsed)
                        if not ok:
                            cell["exact"] = False
                            cell["mismatches"].append(f"repeat {r + 1}: a random read differs from what was written")
                        step(1, "")
                for cell in cells:
                    path = cell.pop("path")
                    cell.pop("setting")
                    if cell["status"] == "ok":
                        cell["disk"] = disk_usage(path)
                        cell["level"] = _level(path)
                        _finish(cell)
                    _remove(path)
                    rows.append(cell)
        parallel = parallel_read.run(plan.datasets, plan.settings, workdir, plan.parallel_workers,
                                     repeats=plan.parallel_repeats or plan.repeats, cache=plan.cache,
                                     max_bytes=plan.parallel_max_bytes, progress=step)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if allocator["mallopt"]:
            tune_allocator(False)  # the rest of the process (a test suite, a notebook) keeps glibc's defaults
    return {
        "imgbench_results": RESULTS_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_start,
        "config": {
            "backends": sorted({s.backend for s in plan.settings}),
            "settings": [s.label for s in plan.settings],
            "repeats": plan.repeats,
            "cache": plan.cache,
            "random_reads": plan.random_reads,
            "seed": plan.seed,
            "workdir": str(plan.workdir or tempfile.gettempdir()),
            "parallel_workers": list(plan.parallel_workers),
        },
        "method": {
            "timer": "time.perf_counter; medians of interleaved repeats, spread = (max - min) / median",
            "write": "os.sync() first; open(mode='w') + extend(images, labels) + close() (includes fsync and atomic publish)",
            "read_all": "open + read_many() + close" + (", page cache evicted first" if plan.cache == "cold" else ", warm page cache"),
            "random": "store[i] for distinct random indices on an open store" + (", page cache evicted first" if plan.cache == "cold" else ""),
            "peak_memory": "tracemalloc peak of Python/NumPy allocations above the baseline, separate untimed pass; "
                           "C-library buffers and memory-mapped pages are not counted",
            "verification": "every repeat compares read-all, labels and each random read with what was written",
            "parallel_read": parallel_read.METHOD if parallel else None,
            "allocator": allocator,
        },
        "machine": machine_info(workdir.parent),
        "versions": versions(),
        "datasets": [ds.describe() for ds in plan.datasets],
        "notes": list(plan.notes) + [f"{ds.name}: {note}" for ds in plan.datasets for note in ds.notes],
        "runs": rows,
        "parallel_read": parallel,
    }


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


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
    w, r, q = (stats[k]["median"] for k in ("write_s", "read_s", "random_s"))
    cell["derived"] = {
        "write_images_per_s": n / w if w > 0 else None,
        "read_images_per_s": n / r if r > 0 else None,
        "write_MB_per_s": raw / w / 1e6 if w > 0 else None,
        "read_MB_per_s": raw / r / 1e6 if r > 0 else None,
        "random_latency_us": q / cell["random_reads"] * 1e6 if cell["random_reads"] else None,
        "size_ratio": cell["disk"]["allocated"] / raw if raw else None,
    }


# -------------------------------------------------------------- environment
def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _filesystem(path: Path) -> str | None:
    """Filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    best, kind = "", None
    target = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, kind = parts[1], f"{parts[2]} on {parts[1]}"
    return kind


def machine_info(where: Path | None = None) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, OS, filesystem."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    mem = next((line.split()[1] for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), None)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "hostname": platform.node(),
        "cpu": cpu,
        "cores": cores,
        "memory_GiB": round(int(mem) / 2**20, 1) if mem else None,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "filesystem": _filesystem(where) if where is not None else None,
    }


def versions() -> dict[str, str | None]:
    """Versions of imgbench and of the libraries doing the work."""
    from importlib import metadata

    out: dict[str, str | None] = {"imgbench": __version__}
    for dist in ("numpy", "Pillow", "lmdb", "h5py", "hdf5plugin", "zstandard", "imagecodecs",
                 "tifffile", "pydicom", "matplotlib", "rich"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import h5py

        out["libhdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    try:
        import lmdb

        out["liblmdb"] = ".".join(map(str, lmdb.version()))
    except ImportError:
        pass
    return out


def make_plan(
    *,
    out: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    datasets_: Sequence[str] | None = None,
    counts: Sequence[str | int] | None = None,
    backends: Sequence[str] | None = None,
    compressions: Sequence[str] | None = None,
    repeats: int | None = None,
    cache: str = "warm",
    quick: bool = False,
    random_reads: int | None = None,
    workdir: str | os.PathLike | None = None,
    parallel_workers: Sequence[str | int] | None = None,
) -> Plan:
    """Turn command-line choices into a :class:`Plan` (validating all of them before anything runs).

    Defaults: the built-in datasets (or only ``source`` when given), counts
    10, 100, ... within a byte budget, every backend with its default and one
    compressed setting, 5 repeats (1 with ``quick``), parallel reads with 1, 2,
    ... up to the core count worker processes (``parallel_workers``; ``["0"]``
    skips them), 3 repeats unless ``repeats`` is given, on at most
    :data:`PARALLEL_BUDGET` bytes of each dataset unless ``counts`` are given.
    Stores are written under ``workdir`` (default: ``out``), i.e. on the disk
    the user chose.
    """
    from imgbench.measure import parallel_read

    if repeats is not None and repeats < 1:
        raise CompareError(f"--repeats must be at least 1, got {repeats}")
    if cache not in ("warm", "cold"):
        raise CompareError(f"--cache is 'warm' or 'cold', not {cache!r}")
    if random_reads is not None and random_reads < 1:
        raise CompareError(f"--random-reads must be at least 1, got {random_reads}")
    settings = settings_for(backends, compressions)
    parsed = parse_counts(counts) if counts else None
    workers = parallel_read.parse_workers(parallel_workers)
    if out is not None:
        out_path = Path(os.fspath(out)).expanduser()
        if out_path.exists() and not out_path.is_dir():
            raise CompareError(f"--out {out_path} is a file; give a folder for report.html and results.json")
        out_path.mkdir(parents=True, exist_ok=True)
    where = workdir if workdir is not None else out
    if where is not None and Path(os.fspath(where)).expanduser().is_file():
        raise CompareError(f"--workdir {where} is a file; give a folder")
    chosen: list[Dataset] = []
    if source is not None:
        chosen.append(source_dataset(source, parsed, quick=quick))
    specs = list(datasets_) if datasets_ else ([] if source is not None else list(datasets.BUILTIN))
    for spec in dict.fromkeys(specs):
        chosen.append(builtin_dataset(spec, parsed, quick=quick))
    return Plan(
        datasets=chosen,
        settings=settings,
        repeats=repeats if repeats is not None else (1 if quick else DEFAULT_REPEATS),
        cache=cache,
        random_reads=random_reads if random_reads is not None else (100 if quick else DEFAULT_RANDOM_READS),
        workdir=Path(os.fspath(where)).expanduser() if where is not None else None,
        parallel_workers=workers,
        parallel_repeats=repeats if repeats is not None else (1 if quick else DEFAULT_PARALLEL_REPEATS),
        parallel_max_bytes=None if parsed else (QUICK_PARALLEL_BUDGET if quick else PARALLEL_BUDGET),
    )


def all_exact(results: dict[str, Any]) -> bool:
    """True when every measured run (and every parallel read) read back exactly what it wrote."""
    from imgbench.measure import parallel_read

    return all(r["exact"] for r in results["runs"] if r["status"] == "ok") and parallel_read.all_exact(
        results.get("parallel_read"))
