"""Peers beside imgbench: litdata, MosaicML MDS and webdataset with their own writers and readers.

Self-contained (shares nothing with the rest of the suite but imgbench itself), so the dashboard shows
the gap between imgbench and each peer over time. The same method as ``imgbench compare --peers``
(:mod:`imgbench.measure.peers`): the peer's writer plus an fsync of everything it wrote after an
untimed ``os.sync()``, read-all = open + the peer's sequential reader, random = the peer's
``reader[i]``; every read is checked. Skipped (NotImplementedError) when a peer is not installed
(``pip install 'imgbench[peers]'``) or on commits from before ``imgbench.measure.peers``.
"""

import os
import shutil
import statistics
import tempfile
import time

import numpy as np

try:
    from imgbench.measure import peers
    from imgbench.measure.harness import prepare_write, same_images
except ImportError:  # a commit from before the peers
    peers = None

SMOKE = os.environ.get("IMGBENCH_ASV_SMOKE", "") not in ("", "0")
COUNT = 20 if SMOKE else 10_000
RANDOM_READS = 5 if SMOKE else 1_000
REPEAT = 1 if SMOKE else 3
#: imgbench's lmdb beside the peers, measured by the same code (the gap is the figure)
SYSTEMS = ["imgbench:lmdb", "peer:litdata", "peer:mds", "peer:webdataset"]


class _Imgbench:
    """imgbench's own store behind the peers' interface (write / read_all / open_random)."""

    @staticmethod
    def write(path, images, labels):
        import imgbench

        with imgbench.open(path, "w", backend="lmdb") as store:
            store.extend(images, labels=labels)

    @staticmethod
    def read_all(path):
        import imgbench

        with imgbench.open(path) as store:
            return store.read_many(), store.labels

    @staticmethod
    def open_random(path):
        import imgbench

        return imgbench.open(path)


def _adapter(system):
    if peers is None:
        raise NotImplementedError("imgbench.measure.peers does not exist in this commit")
    if system.startswith("imgbench:"):
        return _Imgbench
    adapter, note = peers.load(system.split(":", 1)[1])
    if adapter is None:
        raise NotImplementedError(note)
    return adapter


def _median(values):
    return statistics.median(values)


class _Stored:
    """Setup shared by both classes: CIFAR-shaped images (32x32x3 uint8, labels) written once and checked."""

    params = [SYSTEMS]
    param_names = ["backend"]
    rounds = 1
    repeat = 1
    number = 1
    timeout = 900

    def setup(self, system):
        self.adapter = _adapter(system)
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 256, (COUNT, 32, 32, 3), dtype=np.uint8)
        self.labels = rng.integers(0, 10, COUNT).astype(np.int64)
        self.indices = rng.choice(COUNT, RANDOM_READS, replace=False)
        self.tmp = tempfile.mkdtemp(prefix="imgbench-asv-peers-")
        self.path = os.path.join(self.tmp, "store")
        self.adapter.write(self.path, self.images, self.labels)  # untimed: imports, warm-up
        got, labels = self.adapter.read_all(self.path)
        if not same_images(got, self.images) or not np.array_equal(labels, self.labels):
            raise RuntimeError(f"{system} did not read back what was written")

    def teardown(self, system):  # asv calls it after a skipped setup too
        if getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)


class Peers(_Stored):
    """Images/s written (writer + fsync, after an untimed ``os.sync()``) and read all."""

    def track_write_images_per_s(self, system):
        times = []
        for _ in range(REPEAT):
            prepare_write(self.path)
            t0 = time.perf_counter()
            self.adapter.write(self.path, self.images, self.labels)
            times.append(time.perf_counter() - t0)
        return COUNT / _median(times)

    track_write_images_per_s.unit = "images/s"

    def track_read_all_images_per_s(self, system):
        times = []
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            got, _labels = self.adapter.read_all(self.path)
            times.append(time.perf_counter() - t0)
            if not same_images(got, self.images):
                raise RuntimeError(f"{system} read-all differs from what was written")
        return COUNT / _median(times)

    track_read_all_images_per_s.unit = "images/s"



class PeersRandom(_Stored):
    """Random reads (``reader[i]`` on an open reader) of ``RANDOM_READS`` distinct images: µs per image."""

    def setup(self, system):
        super().setup(system)
        self.reader = self.adapter.open_random(self.path)
        if self.reader is None:
            raise NotImplementedError(f"{system} has no random-access reader installed (webdataset: wids)")

    def teardown(self, system):
        if getattr(self, "reader", None) is not None:
            self.reader.close()
        super().teardown(system)

    def track_random_read_us(self, system):
        times = []
        want = [self.images[i] for i in self.indices.tolist()]
        for _ in range(REPEAT):
            t0 = time.perf_counter()
            got = [self.reader[i] for i in self.indices.tolist()]
            times.append(time.perf_counter() - t0)
            if not same_images(got, want):
                raise RuntimeError(f"{system} random reads differ from what was written")
        return _median(times) / RANDOM_READS * 1e6

    track_random_read_us.unit = "µs"
