"""The performance targets of docs/design.md, measured in one process as ratios to a raw bound.

This module runs them all (:func:`run`); its pieces, whose names are importable from here
too: :mod:`~imgbench.measure.targets_config` (what to measure),
:mod:`~imgbench.measure.targets_measure` (one target, both sides timed),
:mod:`~imgbench.measure.targets_rows` (thresholds, rows, verdicts) and
:mod:`~imgbench.measure.targets_table` (the table and the README section).

``imgbench targets`` runs this. Each target is a pair: an imgbench operation and
the reference it is judged against, timed on the same images in the same run:

- read all / write of ``hdf5`` and ``lmdb`` (compression ``none``) against one raw
  ``.npy`` file (the near-physical bound of docs/design.md: ``np.save`` to write, ``np.load``
  + copy into a preallocated array to read -- the definition tests/perf uses);
- ``disk`` ``png`` read all against a single-threaded Pillow loop over the same
  PNG files (the target is a speed-up: the backend must use every core);
- 1,000 random reads from a large store, ``lmdb`` and ``hdf5`` ``none``: the
  per-image latency of a Python loop of ``store[i]`` (the target), and
  ``read_many(indices)`` beside it; the raw bound is the memory-mapped ``.npy``.

Method (why the figures can be trusted on a noisy shared machine):

- Images are generated in memory before anything is timed; every store and the
  raw file are built once per dataset and reused across repeats.
- Each repeat times the reference and the backend back to back, alternating
  which goes first, so drift (write-back of earlier runs, neighbours on the
  host) hits both sides. Figures are medians of the repeats; a ratio is
  ``median(imgbench) / median(reference)``.
- An untimed warm-up call of each side comes first and checks that what was
  read equals what was written (values, dtype, shape).
- Read all = ``imgbench.open`` + ``read_many()`` + ``close`` (what a user pays;
  the open/read split is kept in the JSON). Raw = ``np.load`` + copy into an
  array allocated and touched before timing.
- Write = ``open(..., "w")`` + ``extend(stacked)`` + ``close()``, including the
  store's fsync and atomic publish; raw = ``np.save`` + fsync of the file. Before
  each timed write the previous copy is deleted and the filesystem synced.
- Random reads run on a store opened before timing (per-image latency).
- Cold figures (``cold=True``) evict the files from the page cache first
  (:func:`imgbench.measure.harness.evict`); a store is closed before eviction and
  reopened after, because pages mapped by a process are not dropped.
- glibc is told to keep freed memory for reuse during the run
  (:mod:`imgbench.measure.harness.allocator`): imgbench's ``read_many`` allocates
  its output, and first-touch page faults would otherwise dominate.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgbench.adapters import datasets
from imgbench.measure.harness import (  # noqa: F401  (RAW_* re-exported)
    RAW_RANDOM_LOOP,
    RAW_RANDOM_MANY,
    RAW_READ,
    RAW_WRITE,
    Progress,
    allocator_tuned,
    machine_info,
    no_progress,
    versions,
)
from imgbench.measure.targets_config import Config, TargetsError, make_config  # noqa: F401
from imgbench.measure.targets_measure import (  # noqa: F401  (the asv suite times these one by one)
    build,
    describe_shape,
    disk_png_row,
    png_files,
    random_indices,
    random_rows,
    read_all_row,
    read_loop,
    read_pillow,
    read_raw,
    read_raw_loop,
    write_raw,
    write_row,
    write_store,
)
from imgbench.measure.targets_rows import (  # noqa: F401
    GATED_DATASETS,
    PILLOW_LOOP,
    THRESHOLDS,
    Row,
    exit_code,
    row_from_dict,
    target_text,
)
from imgbench.measure.targets_table import (  # noqa: F401
    COLUMNS,
    README_BEGIN,
    README_END,
    README_SECTION,
    format_table,
    header_lines,
    readme_parts,
    summary_line,
    table_rows,
    update_readme,
)

#: schema of the JSON document; bump when its meaning changes
TARGETS_VERSION = 1

SYNC_NOTE = (
    "write durability: imgbench = everything close() does (fsync of the store's file(s), atomic rename into "
    "place, fsync of the directory); raw .npy = fsync of the file only (no rename, no directory fsync). "
    "Before each timed write the old copy is deleted and the filesystem synced (untimed)."
)


# --------------------------------------------------------------- the run
def total_steps(cfg: Config) -> int:
    """Progress units of :func:`run`: builds, then a warm-up and ``repeat`` pairs per measurement."""
    caches = 2 if cfg.cold else 1
    one = 1 + cfg.repeat
    sets = 3 if cfg.cifar_large else 2  # cifar, [cifar-large,] ct
    read_all = 2 * sets * caches * one  # hdf5, lmdb x each set
    write = 2 * sets * one
    disk_png = (2 * caches + (sets - 2)) * one  # cifar-large: warm only
    random = 2 * caches * (1 + 2 * cfg.repeat)  # lmdb, hdf5: one warm-up, then loop and read_many
    return 2 + sets + read_all + write + disk_png + random  # generate images, build each set, build random


def _measure_all(cfg: Config, root: Path, step: Progress) -> list[Row]:
    """Generate the images, build every store once under ``root``, then measure each target in turn."""
    rows: list[Row] = []
    step(0, "generating images")
    photos = datasets.photos(max(cfg.cifar, cfg.cifar_large, cfg.random_store), shape=cfg.cifar_shape,
                             seed=cfg.seed)
    ct = datasets.ct_slices(cfg.ct, shape=cfg.ct_shape, seed=cfg.seed)
    step(1, "")
    sets = {"cifar": photos[: cfg.cifar]}
    if cfg.cifar_large:
        sets["cifar-large"] = photos[: cfg.cifar_large]
    sets["ct"] = ct
    built: dict[str, dict[str, Path]] = {}
    for name, images in sets.items():
        step(0, f"building {name} stores (once)")
        built[name] = build(root / name, name, images, ("hdf5", "lmdb", "disk-png"))
        step(1, "")
    step(0, f"building the {cfg.random_store:,}-image random store")
    random_paths = build(root / "random", "random", photos[: cfg.random_store], ("hdf5", "lmdb"))
    step(1, "")
    caches = [False, True] if cfg.cold else [False]

    def add(measure: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        got = measure(*args, repeat=cfg.repeat, progress=step, **kwargs)
        for row in got if isinstance(got, tuple) else (got,):
            row.wall_s = time.perf_counter() - t0
            rows.append(row)

    for backend in ("hdf5", "lmdb"):
        for name, images in sets.items():
            for cold in caches:
                add(read_all_row, backend, images, built[name][backend], built[name]["npy"], dataset=name,
                    cold=cold)
    for backend in ("hdf5", "lmdb"):
        for name, images in sets.items():
            add(write_row, backend, images, root / name, dataset=name)
    for name, images in sets.items():
        # Cold PNG reads of the large set would evict 100,000 files before each repeat (minutes each).
        for cold in caches if name != "cifar-large" else [False]:
            add(disk_png_row, images, built[name]["disk-png"], dataset=name, cold=cold)
    indices = random_indices(cfg.random_store, cfg.random_reads, cfg.seed)
    for backend in ("lmdb", "hdf5"):
        for cold in caches:
            add(random_rows, backend, photos[: cfg.random_store], random_paths[backend], random_paths["npy"],
                indices, dataset="cifar", cold=cold)
    return rows


def run(cfg: Config, progress: Progress | None = None, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure every target of the table in docs/design.md; return the results document (see :func:`format_table`)."""
    cfg.validate()
    with allocator_tuned() as allocator:
        started = _dt.datetime.now(_dt.timezone.utc)
        t_start = time.perf_counter()
        where = cfg.workdir if cfg.workdir is not None else Path(tempfile.gettempdir())
        where.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="imgbench-targets-", dir=where))
        try:
            rows = _measure_all(cfg, root, progress or no_progress)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    machine = machine_info(where)
    notes = []
    if (machine.get("filesystem") or "").startswith("tmpfs"):
        notes.append("stores on tmpfs: fsync is free and nothing is ever read from a disk "
                     "(cold figures equal warm ones)")
    return {
        "imgbench_targets": TARGETS_VERSION,
        "created": started.isoformat(timespec="seconds"),
        "elapsed_s": time.perf_counter() - t_start,
        "command": list(command) if command is not None else None,
        "config": {
            "cifar": cfg.cifar, "cifar_large": cfg.cifar_large, "ct": cfg.ct, "random_store": cfg.random_store,
            "random_reads": cfg.random_reads,
            "repeat": cfg.repeat, "cold": cfg.cold, "cifar_shape": list(cfg.cifar_shape),
            "ct_shape": list(cfg.ct_shape), "seed": cfg.seed,
        },
        "workdir": str(where),
        "filesystem": machine.get("filesystem"),
        "method": {
            "summary": "medians of interleaved repeats (reference and imgbench back to back, alternating order); "
                       "ratio = median(imgbench) / median(reference), measured in this run on the same images",
            "read_all": "imgbench.open + read_many() + close vs " + RAW_READ,
            "write": "open('w') + extend(stacked) + close vs " + RAW_WRITE,
            "sync": SYNC_NOTE,
            "disk_png": "disk png read all (thread pool) vs " + PILLOW_LOOP,
            "random": f"{cfg.random_reads} distinct random indices of a {cfg.random_store:,}-image store opened "
                      "before timing: a Python loop of store[i] (the target, per image) and read_many(indices) vs "
                      "the memory-mapped raw .npy",
            "cold": "files evicted from the page cache (fsync + POSIX_FADV_DONTNEED) before each cold timed call"
                    if cfg.cold else None,
            "allocator": allocator,
        },
        "machine": machine,
        "versions": versions(),
        "notes": notes,
        "rows": [r.to_dict() for r in rows],
    }
