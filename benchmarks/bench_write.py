"""Writing N images into a fresh store: time and peak memory."""

import os

import imgbench

from . import helpers
from .helpers import PARAM_NAMES, PARAMS


class WriteImages:
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
    repeat = helpers.repeat((2, 5, 10.0))
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

    def time_write(self, backend, count, shape, compression):
        helpers.write(self.path, backend, compression, self.images)

    def peakmem_write(self, backend, count, shape, compression):
        helpers.write(self.path, backend, compression, self.images)

    def peakmem_reference(self, backend, count, shape, compression):
        """Peak memory of setup alone (the images held in memory): subtract from peakmem_write."""


class AppendImages:
    """``append`` one image at a time (the per-image path) into a fresh store; CIFAR shape.

    Isolated as in :class:`WriteImages`. Shows the per-call overhead that
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
