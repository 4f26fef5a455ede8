"""`imgbench convert` of a folder of PNG files into a sharded dataset on Dask: images per second by workers."""

import logging
import os
import shutil
import statistics
import time

from . import helpers

try:
    from imgbench import cluster
    try:
        from imgbench.adapters import convert as conv
    except ImportError:
        from imgbench import convert as conv  # a commit from before the layered package
except ImportError:  # a commit from before parallel conversion
    cluster = None

SHAPE = "32x32x3"
COUNT = 16 if helpers.SMOKE else 2_000
#: 8 shards: enough tasks for 2 workers to share evenly
IMAGES_PER_SHARD = COUNT // 8
WORKERS = [1, 2]
#: conversions per track_ call (each call is one asv sample; the median is returned)
REPEAT = 1 if helpers.SMOKE else 3


class ConvertFolder:
    """A folder of ``COUNT`` CIFAR-shaped PNG files into a sharded lmdb dataset, ``--workers`` 1 and 2.

    Isolated: writing the PNG files (``setup_cache``), starting the Dask cluster
    of ``workers`` processes (``setup``; the conversion gets its address, as
    ``--scheduler`` does), the page cache (files read once first), and one
    untimed conversion that imports everything in the workers. Timed:
    ``imgbench.adapters.convert`` end to end (connecting to the cluster, listing the
    folder, decoding, writing and publishing the shards, the manifest). The
    figure is images per second over the median of ``REPEAT`` conversions, each
    into a fresh directory after an ``os.sync()``.
    """

    params = [["lmdb"], WORKERS]
    param_names = ["backend", "workers"]
    rounds = 1
    repeat = 1
    number = 1
    timeout = 900

    def setup_cache(self):
        if cluster is None:
            return None
        import imagecodecs

        root = os.path.abspath("png-folder")
        os.makedirs(root, exist_ok=True)
        for k, image in enumerate(helpers.images(SHAPE, COUNT)):
            with open(os.path.join(root, f"{k:06d}.png"), "wb") as f:
                f.write(imagecodecs.png_encode(image))
        return root

    setup_cache.timeout = 900

    def setup(self, folder, backend, workers):
        if folder is None:
            raise NotImplementedError("imgbench.cluster (convert --workers) does not exist in this commit")
        try:
            distributed = cluster.require()
        except Exception as exc:  # UnsupportedError: Dask is not installed
            raise NotImplementedError(str(exc)) from None
        if backend not in helpers.COMPRESSION_BY_BACKEND:
            raise NotImplementedError(f"backend {backend!r} does not exist in this commit")
        self.folder = folder
        self.tmp = helpers.fresh_dir()
        helpers.warm(folder)
        self.cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None, silence_logs=logging.CRITICAL)
        self._convert(os.path.join(self.tmp, "warm-up"), backend)

    def teardown(self, folder, backend, workers):
        dask_cluster = getattr(self, "cluster", None)
        if dask_cluster is not None:
            dask_cluster.close()
            self.cluster = None
        helpers.remove(getattr(self, "tmp", None))

    def _convert(self, dst, backend):
        conv.convert(self.folder, dst, backend=backend, images_per_shard=IMAGES_PER_SHARD,
                     scheduler=self.cluster.scheduler_address)

    def track_images_per_s(self, folder, backend, workers):
        times = []
        for r in range(REPEAT):
            dst = os.path.join(self.tmp, f"run-{r}")
            os.sync()
            t0 = time.perf_counter()
            self._convert(dst, backend)
            times.append(time.perf_counter() - t0)
            shutil.rmtree(dst)
        return COUNT / statistics.median(times)

    track_images_per_s.unit = "images/s"
