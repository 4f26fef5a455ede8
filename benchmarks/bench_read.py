"""Reads with a warm page cache: all images in order, 1,000 random indices, one image."""

import imgbench

from . import helpers


class ReadWarm(helpers.StoreGrid):
    """Reads from stores built once in ``setup_cache``, with their files in the page cache.

    Isolated: building the store (``setup_cache``), page-cache misses (every file is
    read once per process before timing), opening the store (``setup``; the store is
    closed in ``teardown``). Timed: the read call, decoding, and allocating its
    output (memory reuse raised with mallopt, see helpers).
    """

    number = 0
    warmup_time = 0
    repeat = helpers.repeat((3, 10, 5.0))
    rounds = 1

    def setup(self, paths, backend, count, shape, compression):
        path = self._path(paths, backend, count, shape, compression)
        helpers.warm(path)
        self.store = imgbench.open(path)
        self.indices = helpers.random_indices(count)
        self.one = count // 2

    def teardown(self, paths, backend, count, shape, compression):
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    def time_read_all(self, paths, backend, count, shape, compression):
        self.store.read_many()

    def time_read_random_1000(self, paths, backend, count, shape, compression):
        self.store.read_many(self.indices)

    def time_read_one(self, paths, backend, count, shape, compression):
        self.store[self.one]

    def peakmem_read_all(self, paths, backend, count, shape, compression):
        self.store.read_many()

    def peakmem_reference(self, paths, backend, count, shape, compression):
        """Peak memory of setup alone (open store): subtract from peakmem_read_all."""
