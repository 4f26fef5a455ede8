"""Aggregate read time of a sharded dataset by worker processes (as `imgbench compare --parallel-workers`)."""

import os

from . import helpers

try:
    from imgbench import parallel_read
except ImportError:  # a commit from before sharded datasets and parallel reads
    parallel_read = None

SHAPE = "32x32x3"
COUNTS = [40] if helpers.SMOKE else [10_000, 100_000]
SLOW_FROM = 100_000  # counts >= this are skipped under ASV_SKIP_SLOW=1
WORKERS = [1, 2]
#: timed parallel reads per track_ call (each call is one asv sample; the median is returned)
REPEAT = 1 if helpers.SMOKE else (5 if helpers.FULL else 3)


def _check(backend, count):
    if parallel_read is None:
        raise NotImplementedError("imgbench.parallel_read does not exist in this commit")
    if backend not in helpers.COMPRESSION_BY_BACKEND:
        raise NotImplementedError(f"backend {backend!r} does not exist in this commit")
    if helpers.SKIP_SLOW and count >= SLOW_FROM:
        raise NotImplementedError("slow case skipped (ASV_SKIP_SLOW=1)")
    helpers.fast_grid(count, helpers.FAST_PARALLEL_COUNTS)


class ParallelRead:
    """``k`` worker processes read a sharded dataset at once, each a block of whole shards, CIFAR shape.

    The dataset (each backend's default compression, ``shard_count(WORKERS)`` = 4 shards) is
    built once in ``setup_cache``. Isolated: starting the ``k`` processes
    (``setup``), the page cache (files read once per process first), imports of
    the backend in every worker (an untimed read in ``setup``). Timed, inside
    imgbench.parallel_read: from the barrier that releases the workers to the
    last one done, each opening the dataset by path and calling ``read_many`` on
    its share. The figure is the median of ``REPEAT`` such reads, in seconds.
    The processes are forked (``imgbench compare`` spawns them): their start is
    not timed either way, fork takes milliseconds instead of ~0.5 s per case, and
    this benchmark process runs no threads when it forks.
    """

    params = [helpers.BACKEND_AXIS, COUNTS, WORKERS]
    param_names = ["backend", "count", "workers"]
    rounds = 1
    repeat = 1
    number = 1
    timeout = 1200

    def setup_cache(self):
        if parallel_read is None:
            return None
        root = os.path.abspath("parallel-read")
        os.makedirs(root, exist_ok=True)
        paths = {}
        for count in COUNTS:
            try:
                _check(helpers.BACKENDS[0], count)
            except NotImplementedError:
                continue
            data = helpers.images(SHAPE, count)
            for backend in helpers.BACKENDS:
                path = os.path.join(root, f"{backend}-{count}")
                parallel_read.build(path, data, None, backend, helpers.COMPRESSION_BY_BACKEND[backend][0],
                                    parallel_read.shard_count(WORKERS))
                paths[f"{backend}-{count}"] = path
        return paths

    setup_cache.timeout = 1800

    def setup(self, paths, backend, count, workers):
        _check(backend, count)
        self.path = paths[f"{backend}-{count}"]
        helpers.warm(self.path)
        self.ranges = parallel_read.shares(parallel_read.shard_bounds(self.path), workers)
        self.pool = parallel_read.ReaderPool(workers, "fork")
        self.pool.read(self.path, self.ranges)  # warm-up: imports, first touch of memory

    def teardown(self, paths, backend, count, workers):
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()
            self.pool = None

    def track_read_all_s(self, paths, backend, count, workers):
        return parallel_read.median_read_s(self.pool, self.path, self.ranges, REPEAT)

    track_read_all_s.unit = "seconds"
