"""Reads with a cold page cache: the store's files are evicted before each timed call."""

import imgbench

from . import helpers


class ReadCold(helpers.StoreGrid):
    """Reads after evicting the store's files from the page cache.

    Isolated: building the store (``setup_cache``); before every timed call
    ``setup`` (the store of the previous sample is closed in ``teardown``) fsyncs each file and drops it with
    ``posix_fadvise(DONTNEED)`` (no root needed), then opens the store. Timed: the
    read, including the device I/O, decoding and allocating the output. On a VM
    the "device" may be a host cache: compare backends within one run.
    """

    params = [helpers.BACKEND_AXIS, helpers.COLD_COUNTS, helpers.SHAPE_NAMES, helpers.COMPRESSIONS]
    number = 1
    warmup_time = 0
    repeat = helpers.repeat((3, 5, 10.0))
    rounds = 1

    def setup(self, paths, backend, count, shape, compression):
        helpers.fast_grid((shape, count), helpers.FAST_COLD_CELLS)
        path = self._path(paths, backend, count, shape, compression)
        helpers.evict(path)
        self.store = imgbench.open(path)
        self.indices = helpers.random_indices(count)

    def teardown(self, paths, backend, count, shape, compression):
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    def time_read_all_cold(self, paths, backend, count, shape, compression):
        self.store.read_many()

    def time_read_random_1000_cold(self, paths, backend, count, shape, compression):
        self.store.read_many(self.indices)
