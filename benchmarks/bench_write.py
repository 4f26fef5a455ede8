"""Writing N images into a fresh store: time and peak memory."""

import os

import imgbench

from . import helpers
from .helpers import PARAM_NAMES, PARAMS


class _Write:
    """Open a new store (mode ``"w"``), ``extend`` with N in-memory images, close (publish).

    Isolated: image generation (cached .npy, loaded in ``setup``), the temporary
    directory (made in ``setup``, removed in ``teardown``) and write-back of earlier
    runs (``os.sync()`` in ``setup``). Timed: encoding, writing into the page cache,
    the store's own fsync/publish on close. Writes are not idempotent, so each
    sample is one call into a fresh directory (``number = 1``, no warm-up).
    """

    params = PARAMS
    param_names = PARAM_NAMES
    number = 1
    warmup_time = 0
    #: a write of 10,000 PNGs takes ~5 s here: one sample in the fast grid when it is that slow
    repeat = helpers.repeat((2, 5, 10.0), fast=(1, 3, 2.0))
    rounds = 1
    timeout = 900

    def setup(self, backend, count, shape, compression):
        helpers.check(backend, count, shape, compression)
        self.images = helpers.images(shape, count)
        self.tmp = helpers.fresh_dir()
        self.path = os.path.join(self.tmp, "store")
        os.sync()

    def teardown(self, backend, count, shape, compression):
        helpers.remove(getattr(self, "tmp", None))



class WriteImages(_Write):
    """Time of the write (see :class:`_Write` for what is isolated)."""

    def time_write(self, backend, count, shape, compression):
        helpers.write(self.path, backend, compression, self.images)


class WriteMemory(_Write):
    """Peak memory of the write of :class:`WriteImages` (one call per cell, a full write each).

    In the fast grid only CIFAR 10,000 images (``helpers.FAST_MEMORY_CELLS``): peak memory
    grows with the images held, and a write per cell of the whole grid would cost a minute.
    """

    def setup(self, backend, count, shape, compression):
        helpers.fast_grid((shape, count), helpers.FAST_MEMORY_CELLS)
        _Write.setup(self, backend, count, shape, compression)

    def peakmem_write(self, backend, count, shape, compression):
        helpers.write(self.path, backend, compression, self.images)

    def peakmem_reference(self, backend, count, shape, compression):
        """Peak memory of setup alone (the images held in memory): subtract from peakmem_write."""


class AppendImages:
    """``append`` one image at a time (the per-image path) into a fresh store; CIFAR shape.

    Isolated as in :class:`_Write`. Shows the per-call overhead that
    ``extend`` avoids.
    """

    params = [helpers.BACKEND_AXIS, [1000], ["32x32x3"], helpers.COMPRESSIONS]
    param_names = PARAM_NAMES
    number = 1
    warmup_time = 0
    repeat = helpers.repeat((2, 5, 10.0))
    rounds = 1

    def setup(self, backend, count, shape, compression):
        helpers.check(backend, count, shape, compression)
        self.images = list(helpers.images(shape, count))
        self.tmp = helpers.fresh_dir()
        self.path = os.path.join(self.tmp, "store")
        os.sync()

    def teardown(self, backend, count, shape, compression):
        helpers.remove(getattr(self, "tmp", None))

    def time_append(self, backend, count, shape, compression):
        with imgbench.open(self.path, "w", backend=backend, compression=compression) as store:
            for image in self.images:
                store.append(image)
