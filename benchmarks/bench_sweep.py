"""Image-count sweep 10 .. 100,000 at CIFAR shape (32x32x3 uint8), each backend's default compression."""

import os

import imgbench

from . import helpers

SHAPE = "32x32x3"
COUNTS = helpers.SWEEP_COUNTS
SLOW_FROM = 100000  # counts >= this are skipped under ASV_SKIP_SLOW=1


def _check(backend, count):
    if backend not in helpers.COMPRESSION_BY_BACKEND:
        raise NotImplementedError(f"backend {backend!r} does not exist in this commit")
    if helpers.SKIP_SLOW and count >= SLOW_FROM:
        raise NotImplementedError("slow case skipped (ASV_SKIP_SLOW=1)")
    helpers.fast_grid(count, helpers.FAST_SWEEP_COUNTS)


def _default(backend):
    return helpers.COMPRESSION_BY_BACKEND[backend][0]


class CountSweep:
    """Write, read-all (warm) and size versus image count: the article's figures.

    The x axis of each dashboard graph is ``count``, one series per backend.
    Isolated as in bench_write (writes: fresh directory, data loaded and
    ``os.sync()`` in ``setup``) and bench_read (reads: stores built in
    ``setup_cache``, files read into the page cache once per process, store
    opened in ``setup``). Outputs over 32 MiB (>= ~10,000 images read at once)
    still pay first-touch page faults.
    """

    params = [helpers.BACKEND_AXIS, COUNTS]
    param_names = ["backend", "count"]
    number = 1
    warmup_time = 0
    repeat = helpers.repeat((2, 5, 10.0))
    rounds = 1
    timeout = 1200

    def setup_cache(self):
        root = os.path.abspath("sweep")
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
                helpers.write(path, backend, _default(backend), data)
                paths[(backend, count)] = path
        return paths

    setup_cache.timeout = 1800

    def setup(self, paths, backend, count):
        _check(backend, count)
        self.tmp = helpers.fresh_dir()
        self.target = os.path.join(self.tmp, "store")
        self.path = paths[(backend, count)]

    def teardown(self, paths, backend, count):
        store = getattr(self, "store", None)
        if store is not None:
            store.close()
            self.store = None
        helpers.remove(getattr(self, "tmp", None))

    def _open(self):
        helpers.warm(self.path)
        self.store = imgbench.open(self.path)


class SweepWrite(CountSweep):
    """Write N images (fresh store, one sample per call)."""

    def setup(self, paths, backend, count):
        CountSweep.setup(self, paths, backend, count)
        self.images = helpers.images(SHAPE, count)
        os.sync()

    def time_write(self, paths, backend, count):
        helpers.write(self.target, backend, _default(backend), self.images)


class SweepRead(CountSweep):
    """Read all N images, warm page cache."""

    repeat = helpers.repeat((3, 10, 10.0))

    def setup(self, paths, backend, count):
        CountSweep.setup(self, paths, backend, count)
        self._open()

    def time_read_all(self, paths, backend, count):
        self.store.read_many()


class SweepSize(CountSweep):
    """Allocated bytes and files versus N."""

    def track_allocated_bytes(self, paths, backend, count):
        _check(backend, count)
        return imgbench.disk_usage(paths[(backend, count)])["allocated"]

    track_allocated_bytes.unit = "bytes"

    def track_files(self, paths, backend, count):
        _check(backend, count)
        return imgbench.disk_usage(paths[(backend, count)])["files"]

    track_files.unit = "files"
