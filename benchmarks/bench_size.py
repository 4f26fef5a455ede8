"""Size on disk: noise-free track_ benchmarks over the stores of the main grid."""

import imgbench

from . import helpers


class StoreSize(helpers.StoreGrid):
    """Bytes and files of stores built once in ``setup_cache``; nothing is timed.

    ``apparent``: sum of file sizes; ``allocated``: what the filesystem really uses
    (block rounding, per-file overhead); ``files``: inodes used; compression ratio:
    raw pixel bytes / apparent bytes (higher = smaller store).
    """

    def setup(self, paths, backend, count, shape, compression):
        helpers.check(backend, count, shape, compression)

    def track_apparent_bytes(self, paths, backend, count, shape, compression):
        return imgbench.disk_usage(self._path(paths, backend, count, shape, compression))["apparent"]

    track_apparent_bytes.unit = "bytes"

    def track_allocated_bytes(self, paths, backend, count, shape, compression):
        return imgbench.disk_usage(self._path(paths, backend, count, shape, compression))["allocated"]

    track_allocated_bytes.unit = "bytes"

    def track_files(self, paths, backend, count, shape, compression):
        return imgbench.disk_usage(self._path(paths, backend, count, shape, compression))["files"]

    track_files.unit = "files"

    def track_compression_ratio(self, paths, backend, count, shape, compression):
        apparent = imgbench.disk_usage(self._path(paths, backend, count, shape, compression))["apparent"]
        return helpers.raw_nbytes(shape, count) / apparent

    track_compression_ratio.unit = "ratio"
