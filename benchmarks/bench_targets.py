"""The performance targets of docs/design.md, tracked across commits as ratios to a raw bound.

Each ``track_`` benchmark runs one target's measurement in-process with
:mod:`imgbench.measure.targets` (the code behind ``imgbench targets``): the backend and its
reference timed back to back on the same images, medians of interleaved repeats.
A ratio is a noise-resistant signal: a uniformly slower machine leaves it alone.
The ``time_`` benchmarks time the references themselves (and the ``store[i]``
loop), so a moved ratio can be traced to the numerator or the denominator.

Sizes: 10,000 CIFAR-shaped images (the reference set of docs/design.md) and a
100,000-image store for random reads in the full grid (20,000 in the fast grid and under ``ASV_SKIP_SLOW=1``; tiny
under ``IMGBENCH_ASV_SMOKE=1``). Commits without :mod:`imgbench.measure.targets` show n/a.
"""

import os
from pathlib import Path

import numpy as np

import imgbench

from . import helpers

try:
    from imgbench.measure import targets
except ImportError:
    try:
        from imgbench import targets  # a commit from before the layered package
    except ImportError:  # a commit from before `imgbench targets`
        targets = None

SHAPE = "32x32x3"
COUNT = 50 if helpers.SMOKE else 10_000
#: the 100,000-image random-read store only in the full grid (IMGBENCH_ASV_FULL=1 without ASV_SKIP_SLOW)
RANDOM_STORE = 500 if helpers.SMOKE else (100_000 if helpers.FULL and not helpers.SKIP_SLOW else 20_000)
RANDOM_READS = 100 if helpers.SMOKE else 1_000
#: interleaved repeats inside one track_ call (each call is one asv sample)
REPEAT = 1 if helpers.SMOKE else (5 if helpers.FULL else 3)
#: the Pillow loop over 10,000 PNGs takes ~1.5 s a side here: fewer repeats
REPEAT_PNG = 1 if helpers.SMOKE else (3 if helpers.FULL else 2)


class _TargetStores:
    """Builds the raw .npy files and the stores once per asv run; returns paths only."""

    timeout = 900

    def setup_cache(self):
        if targets is None:
            return None
        root = Path("targets").resolve()
        paths = targets.build(root / "cifar", "cifar", helpers.images(SHAPE, COUNT), ("hdf5", "lmdb", "disk-png"))
        big = targets.build(root / "random", "random", helpers.images(SHAPE, RANDOM_STORE), ("hdf5", "lmdb"))
        out = {f"cifar-{k}": str(v) for k, v in paths.items()}
        out.update({f"random-{k}": str(v) for k, v in big.items()})
        return out

    setup_cache.timeout = 1800

    def _setup(self, paths):
        if targets is None or paths is None:
            raise NotImplementedError("imgbench.measure.targets does not exist in this commit")
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.images = helpers.images(SHAPE, COUNT)
        self.indices = targets.random_indices(RANDOM_STORE, RANDOM_READS)


class Targets(_TargetStores):
    """One benchmark per target of docs/design.md, returning the figure the target bounds.

    Isolated: image generation, building the read stores (``setup_cache``), the
    temporary directory for writes. Inside each call, as in ``imgbench targets``:
    an untimed warm-up that checks the round trip, then ``REPEAT`` interleaved
    pairs (reference, backend); the figure is computed from the two medians.
    Ratios: imgbench time / raw ``.npy`` time (lower is better; targets 1.3, 3,
    1.5, 10); disk png: Pillow-loop time / imgbench time (higher is better;
    target 1.6); random: microseconds per ``store[i]`` (target 20).
    """

    rounds = 1
    repeat = 1

    def setup(self, paths):
        self._setup(paths)
        self.tmp = helpers.fresh_dir()

    def teardown(self, paths):
        helpers.remove(getattr(self, "tmp", None))

    def _read_all(self, backend):
        return targets.read_all_row(backend, self.images, self.paths[f"cifar-{backend}"], self.paths["cifar-npy"],
                                    dataset="cifar", repeat=REPEAT).figure

    def _write(self, backend):
        return targets.write_row(backend, self.images, Path(self.tmp), dataset="cifar", repeat=REPEAT).figure

    def _random(self, backend):
        loop, _many = targets.random_rows(backend, None, self.paths[f"random-{backend}"], self.paths["random-npy"],
                                          self.indices, dataset="cifar", repeat=REPEAT)
        return loop.figure

    def track_hdf5_read_all_ratio(self, paths):
        return self._read_all("hdf5")

    track_hdf5_read_all_ratio.unit = "ratio"

    def track_lmdb_read_all_ratio(self, paths):
        return self._read_all("lmdb")

    track_lmdb_read_all_ratio.unit = "ratio"

    def track_hdf5_write_ratio(self, paths):
        return self._write("hdf5")

    track_hdf5_write_ratio.unit = "ratio"

    def track_lmdb_write_ratio(self, paths):
        return self._write("lmdb")

    track_lmdb_write_ratio.unit = "ratio"

    def track_disk_png_read_all_speedup(self, paths):
        return targets.disk_png_row(self.images, self.paths["cifar-disk-png"], dataset="cifar",
                                    repeat=REPEAT_PNG).figure

    track_disk_png_read_all_speedup.unit = "ratio"

    def track_lmdb_random_us_per_image(self, paths):
        return self._random("lmdb")

    track_lmdb_random_us_per_image.unit = "us/image"

    def track_hdf5_random_us_per_image(self, paths):
        return self._random("hdf5")

    track_hdf5_random_us_per_image.unit = "us/image"


class TargetReferences(_TargetStores):
    """The denominators of the targets, and the ``store[i]`` loop, timed on their own.

    Warm page cache (every file read once per process first). Outputs of the
    references are preallocated in ``setup``; ``store[i]`` allocates as users see.
    """

    number = 0
    warmup_time = 0
    repeat = helpers.repeat((3, 10, 5.0))
    rounds = 1

    def setup(self, paths):
        self._setup(paths)
        for key in ("cifar-npy", "cifar-disk-png", "random-npy", "random-lmdb", "random-hdf5"):
            helpers.warm(str(self.paths[key]))
        self.out = self.images.copy()
        self.files = targets.png_files(self.paths["cifar-disk-png"], COUNT)
        self.index_list = self.indices.tolist()
        self.stores = {b: imgbench.open(self.paths[f"random-{b}"]) for b in ("lmdb", "hdf5")}
        self.mapped = np.load(self.paths["random-npy"], mmap_mode="r")

    def teardown(self, paths):
        for store in getattr(self, "stores", {}).values():
            store.close()
        self.mapped = None

    def time_raw_npy_read_all(self, paths):
        targets.read_raw(self.paths["cifar-npy"], self.out)

    def time_pillow_loop_read_all(self, paths):
        targets.read_pillow(self.files, self.out)

    time_pillow_loop_read_all.repeat = helpers.repeat((2, 5, 10.0))
    time_pillow_loop_read_all.number = 1

    def time_raw_npy_random_loop(self, paths):
        targets.read_raw_loop(self.mapped, self.index_list)

    def time_lmdb_random_loop(self, paths):
        targets.read_loop(self.stores["lmdb"], self.index_list)

    def time_hdf5_random_loop(self, paths):
        targets.read_loop(self.stores["hdf5"], self.index_list)


class TargetWriteReference:
    """The raw write bound: ``np.save`` + fsync + close into a fresh file (after a sync), 10,000 CIFAR images."""

    number = 1
    warmup_time = 0
    repeat = helpers.repeat((2, 5, 10.0))
    rounds = 1

    def setup(self):
        if targets is None:
            raise NotImplementedError("imgbench.measure.targets does not exist in this commit")
        self.images = helpers.images(SHAPE, COUNT)
        self.tmp = helpers.fresh_dir()
        self.path = Path(self.tmp) / "raw.npy"
        os.sync()

    def teardown(self):
        helpers.remove(getattr(self, "tmp", None))

    def time_raw_npy_write(self):
        targets.write_raw(self.path, self.images)
