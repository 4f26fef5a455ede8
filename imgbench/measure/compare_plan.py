"""Planning ``imgbench compare``: command-line choices -> a :class:`Plan` (datasets x settings x counts).

Every option is validated here, before anything runs or is written; the budgets below keep
a default run near a minute on 2 cores.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgbench.adapters import datasets
from imgbench.core import transport
from imgbench.measure import parallel_read, peers as peer_registry
from imgbench.measure.matrix import CompareError, Dataset, Setting, settings_of
from imgbench.storage import registry
from imgbench.storage.registry import backends as all_backends

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
#: what the default compare adds for 16-bit images: the medical codec that decodes fastest at fewer
#: bytes than PNG (HTJ2K; it stores int16 too), on the backend whose container adds least (lmdb)
MEDICAL_CODEC = "htj2k"
MEDICAL_SETTING = ("lmdb", MEDICAL_CODEC)



@dataclass
class Plan:
    """What one ``imgbench compare`` measures, and how (repeats, cache state, where stores go)."""

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
    #: peers measured beside the backends (:mod:`imgbench.measure.peers`), e.g. ``["litdata", "mds"]``
    peers: list[str] = field(default_factory=list)

    def steps(self) -> int:
        """Progress units: one per pass (warm-up + repeats) of each cell, plus the parallel reads."""
        installed = [name for name in self.peers if peer_registry.load(name)[0] is not None]
        cells = sum(len(d.counts) * (len(settings_of(self.settings, d)) + len(installed)) for d in self.datasets)
        return cells * (self.repeats + 1) + parallel_read.steps(
            self.datasets, self.settings, self.parallel_workers, self.parallel_repeats or self.repeats)


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
            if (name, MEDICAL_CODEC) == MEDICAL_SETTING and MEDICAL_CODEC in comps:
                settings.append(Setting(name, MEDICAL_CODEC, only_16bit=True))
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


def _builtin_spec(
    spec: str, counts: Sequence[int] | None = None, *, quick: bool = False
) -> tuple[str, dict, tuple[int, ...], list[int], int]:
    """``NAME[:SHAPE]`` -> (name, info, shape, counts, bytes per image), validated; allocates nothing."""
    name, _, shape_text = spec.partition(":")
    if name not in datasets.BUILTIN:
        raise CompareError(f"unknown dataset {name!r}; choose from: {', '.join(datasets.BUILTIN)} (NAME[:HxW[xC]])")
    info = datasets.BUILTIN[name]
    shape = _parse_shape(shape_text) if shape_text else tuple(info["shape"])
    if info["kind"] == "ct_slices" and len(shape) != 2:
        raise CompareError(f"{name} images are 2-D slices: give HxW, not {shape_text}")
    itemsize = 2 if info["kind"] == "ct_slices" else 1
    per_image = int(np.prod(shape, dtype=object)) * itemsize
    if counts:
        counts = sorted(counts)
    else:
        counts = default_counts(
            per_image,
            QUICK_BUDGET if quick else DEFAULT_BUDGET,
            QUICK_MAX_COUNT if quick else MAX_DEFAULT_COUNT,
        )
    return name, info, shape, list(counts), per_image


def available_memory() -> int | None:
    """Bytes of RAM available now (MemAvailable of /proc/meminfo, else free pages), None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / (1 << 30):,.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):,.1f} MiB"


def check_memory(specs: Sequence[str], counts: Sequence[int] | None = None, *, quick: bool = False) -> None:
    """CompareError, before anything is allocated, when the built-in datasets would not fit in available RAM."""
    needs = []
    for spec in dict.fromkeys(specs):
        name, info, shape, cs, per_image = _builtin_spec(spec, counts, quick=quick)
        dtype = "uint16" if info["kind"] == "ct_slices" else "uint8"
        needs.append((spec, max(cs), shape, dtype, max(cs) * per_image))
    total = sum(n for *_, n in needs)
    available = available_memory()
    if available is None or total <= available:
        return
    what = "; ".join(f"{spec}: {c:,} images of {'x'.join(map(str, shape))} {dtype}" for spec, c, shape, dtype, _ in needs)
    raise CompareError(
        f"the datasets need {_gib(total)} of memory ({what}) but only {_gib(available)} is available; "
        "use smaller --counts or a smaller shape (e.g. ct:512x512)"
    )


def builtin_dataset(
    spec: str, counts: Sequence[int] | None = None, *, quick: bool = False, seed: int = 0
) -> Dataset:
    """A built-in dataset, ``NAME`` or ``NAME:SHAPE`` (e.g. ``cifar``, ``ct:256x256``, ``cifar:64x64x3``)."""
    name, info, shape, counts, _ = _builtin_spec(spec, counts, quick=quick)
    shape_text = spec.partition(":")[2]
    n = max(counts)
    if info["kind"] == "photos":
        images = datasets.photos(n, shape=shape, seed=seed)
    else:
        images = datasets.ct_slices(n, shape=shape, seed=seed)
    about = info["about"] if not shape_text else f"{info['kind'].replace('_', ' ')}, {shape_text} {images.dtype}"
    return Dataset(
        name=spec, about=about, images=images, labels=datasets.labels(n, seed=seed), counts=list(counts)
    )


def source_dataset(
    folder: str | os.PathLike,
    counts: Sequence[int] | None = None,
    *,
    quick: bool = False,
    max_image_pixels: int | None = None,
) -> Dataset:
    """The user's own images from ``folder`` (see :mod:`imgbench.adapters.sources`).

    Without ``counts``, reading stops before the first image (page, frame) whose declared size
    would take the pixels read beyond the budget; images above ``max_image_pixels`` are skipped.
    """
    from imgbench.adapters import sources

    budget = QUICK_BUDGET if quick else SOURCE_BUDGET
    max_count = QUICK_MAX_COUNT if quick else MAX_DEFAULT_COUNT
    if counts:
        loaded = sources.load(folder, max_images=max(counts), max_image_pixels=max_image_pixels)
    else:
        loaded = sources.load(folder, max_images=max_count, max_bytes=budget, max_image_pixels=max_image_pixels)
    images = loaded.images
    notes = list(loaded.warnings) + list(loaded.notes)
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
    kinds = sorted({f"{im.dtype}" for im in images})
    stacked: np.ndarray | list[np.ndarray] = images
    if all(im.shape == images[0].shape and im.dtype == images[0].dtype for im in images):
        # one image at a time into one array, each dropped once copied: the pixels are held once, not twice
        stacked = np.empty((n, *images[0].shape), images[0].dtype)
        for k in range(n):
            stacked[k] = images[k]
            images[k] = None  # type: ignore[call-overload]
        loaded.images = images = []
    name = Path(os.fspath(folder)).expanduser().resolve().name or "source"
    about = f"your images from {folder} ({n} images, {', '.join(kinds)}" + (
        f", {len(loaded.classes)} classes)" if loaded.classes else ")"
    )
    return Dataset(
        name=name, about=about, images=stacked, labels=loaded.labels, counts=counts,
        source=str(folder), notes=notes,
    )


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
    max_image_pixels: int | None = None,
    peers: Sequence[str] | None = None,
) -> Plan:
    """Turn command-line choices into a :class:`Plan` (validating all of them before anything runs).

    Defaults: the built-in datasets (or only ``source`` when given), counts
    10, 100, ... within a byte budget, every backend with its default and one
    compressed setting, 5 repeats (1 with ``quick``), parallel reads with 1, 2,
    ... up to the core count worker processes (``parallel_workers``; ``["0"]``
    skips them), 3 repeats unless ``repeats`` is given, on at most
    :data:`PARALLEL_BUDGET` bytes of each dataset unless ``counts`` are given.
    Stores are written under ``workdir`` (default: ``out``), i.e. on the disk
    the user chose. ``source`` images above ``max_image_pixels`` pixels
    (default Pillow's ``PIL.Image.MAX_IMAGE_PIXELS``) are skipped undecoded.
    """
    from imgbench.adapters.source_limits import pixel_limit

    pixel_limit(max_image_pixels)  # a bad limit fails before anything is read
    if repeats is not None and repeats < 1:
        raise CompareError(f"--repeats must be at least 1, got {repeats}")
    for role, where in (("report folder (--out)", out), ("work folder (--workdir)", workdir)):
        if where is not None:
            transport.local_destination(where, role)
    if cache not in ("warm", "cold"):
        raise CompareError(f"--cache is 'warm' or 'cold', not {cache!r}")
    if random_reads is not None and random_reads < 1:
        raise CompareError(f"--random-reads must be at least 1, got {random_reads}")
    settings = settings_for(backends, compressions)
    chosen_peers = peer_registry.parse(peers)
    parsed = parse_counts(counts) if counts else None
    workers = parallel_read.parse_workers(parallel_workers)
    specs = list(datasets_) if datasets_ else ([] if source is not None else list(datasets.BUILTIN))
    check_memory(specs, parsed, quick=quick)  # before allocating any dataset
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
        chosen.append(source_dataset(source, parsed, quick=quick, max_image_pixels=max_image_pixels))
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
        peers=chosen_peers,
    )
