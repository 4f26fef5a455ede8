"""Guards against hostile HDF5 files: nothing HDF5 would follow out of the file, no allocation it cannot back.

A file from an untrusted source may hold links to other files, external or
virtual storage, filters HDF5 would load from its plugin path, lengths no stored
bytes back, or compressed chunks that inflate to gigabytes. The datasets are
checked when the store is opened (:func:`check_layout`, :func:`check_dataset`),
and each compressed chunk before HDF5's filters first decode it (:class:`ChunkGuard`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from imgbench.core import checksum, limits
from imgbench.core.errors import CorruptStoreError
from imgbench.storage.hdf5.layout import (
    ALLOWED_FILTERS,
    COMPRESSORS,
    FILTER_ZSTD,
    H5_ERRORS,
    IMAGE_DTYPES,
    MAX_CHUNK_BYTES,
)


def check_dataset(
    f: h5py.File, name: str, target: Path, required: bool = True, backed: bool = True
) -> h5py.Dataset | None:
    """Dataset ``name`` if it is one imgbench could have written, else CorruptStoreError.

    A soft or external link, external raw storage or a virtual dataset would make
    HDF5 read other files (any path the file names); an unknown filter makes it
    search the plugin path. Each chunked dataset must have every chunk stored
    (imgbench writes them all), so no declared length can outgrow the file, and
    chunks of sane size (unless not ``backed``: the reader checks the stored size
    itself). Nothing here follows a link or reads raw data.
    """
    links = f.id.links
    if not links.exists(name.encode()):
        if required:
            raise CorruptStoreError(f"{target}: dataset {name!r} is missing")
        return None
    if links.get_info(name.encode()).type != h5py.h5l.TYPE_HARD:
        raise CorruptStoreError(f"{target}: {name!r} is a link to elsewhere, not a dataset of the store")
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise CorruptStoreError(f"{target}: {name!r} is a {type(obj).__name__}, not a dataset")
    dcpl = obj.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout not in (h5py.h5d.CHUNKED, h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT) or dcpl.get_external_count():
        raise CorruptStoreError(f"{target}: {name!r} keeps its data outside the file (external or virtual)")
    filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    if any(code not in ALLOWED_FILTERS for code in filters):
        raise CorruptStoreError(f"{target}: {name!r} uses HDF5 filters {filters} imgbench never writes")
    if obj.dtype.hasobject and name != "attrs":
        raise CorruptStoreError(f"{target}: {name!r} has dtype {obj.dtype}")
    if layout == h5py.h5d.CHUNKED:
        chunks, shape = obj.chunks, obj.shape
        if chunks is None or len(shape) < 1 or tuple(chunks[1:]) != tuple(shape[1:]):
            raise CorruptStoreError(f"{target}: {name!r} is chunked {chunks} for shape {shape}")
        row = int(np.prod(shape[1:], dtype=np.float64)) * obj.dtype.itemsize
        if chunks[0] * row > max(MAX_CHUNK_BYTES, row):
            raise CorruptStoreError(f"{target}: {name!r} has chunks of {chunks[0] * row} bytes")
        if backed and obj.id.get_num_chunks() != -(-shape[0] // chunks[0]):
            raise CorruptStoreError(
                f"{target}: {name!r} declares {shape[0]} rows but lacks chunks to hold them"
            )
    elif filters:
        raise CorruptStoreError(f"{target}: {name!r} has filters without chunks")
    elif backed:
        need = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
        if obj.id.get_storage_size() < need:
            raise CorruptStoreError(f"{target}: {name!r} declares {need} bytes but stores fewer")
    return obj


def check_layout(f: h5py.File, meta: dict[str, Any], target: Path) -> None:
    """The datasets of the file agree with its metadata (``count``, ``layout``, labels, checksums), and no
    dataset declares more than the file can hold: checked before any is read."""
    count = meta.get("count")
    layout = meta.get("layout")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CorruptStoreError(f"{target}: metadata count {count!r} is not a number of images")
    try:
        if layout == "uniform":
            images = check_dataset(f, "images", target)
            shape, dtype = images.shape, images.dtype
            if (
                dtype.str not in IMAGE_DTYPES
                or len(shape) not in (3, 4)
                or min(shape[1:]) < 1
                or (len(shape) == 4 and shape[3] > 4)
            ):
                raise CorruptStoreError(f"{target}: 'images' is {shape} {dtype}, not images imgbench writes")
            need = count * int(np.prod(shape[1:], dtype=np.float64)) * dtype.itemsize
            stored = images.id.get_storage_size()
            compressed = images.chunks is not None and any(
                images.id.get_create_plist().get_filter(i)[0] in COMPRESSORS
                for i in range(images.id.get_create_plist().get_nfilters())
            )
            if limits.RatioLimit(limits.HDF5_MAX_RATIO if compressed else 1).exceeded(need, stored):
                raise CorruptStoreError(
                    f"{target}: {count} images of {shape[1:]} {dtype} need {need} bytes, the file stores {stored}"
                )
            length = shape[0]
        elif layout == "ragged":
            data = check_dataset(f, "data", target)
            index = {name: check_dataset(f, name, target) for name in ("offsets", "shapes", "dtypes")}
            if (
                data.dtype.str != "|u1" or data.ndim != 1
                or index["offsets"].dtype.str != "<i8" or index["offsets"].ndim != 1
                or index["shapes"].dtype.str != "<i8"
                or index["dtypes"].dtype.kind != "S" or index["dtypes"].dtype.itemsize > 8
            ):
                raise CorruptStoreError(f"{target}: ragged datasets have foreign dtypes or shapes")
            offsets = index["offsets"][:]
            length = len(offsets) - 1
            if (
                length < 0
                or offsets[0] != 0
                or (np.diff(offsets) < 0).any()
                or offsets[-1] > data.shape[0]
                or index["shapes"].shape != (length, 3)
                or index["dtypes"].shape != (length,)
            ):
                raise CorruptStoreError(f"{target}: ragged index (offsets/shapes/dtypes) is inconsistent")
        elif layout is None and count == 0:
            length = 0
        else:
            raise CorruptStoreError(f"{target}: unknown layout {layout!r}")
        if meta.get("labels"):
            labels = check_dataset(f, "labels", target)
            if labels.shape != (count,) or labels.dtype.kind not in "iu" or labels.dtype.itemsize > 8:
                raise CorruptStoreError(f"{target}: 'labels' does not hold one label per image")
        # An empty store records the algorithm before it has a dataset to hold digests.
        if meta.get("checksum") == checksum.ALGORITHM and count:
            # Not ``backed``: a hollow 'checksums' fails when read, images stay readable.
            if check_dataset(f, "checksums", target, backed=False).shape != (count,):
                raise CorruptStoreError(f"{target}: 'checksums' does not hold one checksum per image")
    except (*H5_ERRORS, AttributeError) as exc:
        raise CorruptStoreError(f"{target}: store datasets are missing or damaged ({exc})") from None
    if length != count:
        raise CorruptStoreError(f"{target}: metadata counts {count} images, the datasets hold {length}")


class ChunkGuard:
    """Checks each compressed chunk of a dataset once, before HDF5's filters decompress it.

    HDF5's deflate filter grows its output without bound and hdf5plugin's zstd
    mallocs whatever size the frame declares, and HDF5 accepts an output larger
    than the chunk: a small chunk could cost the reader gigabytes. A chunk
    passes if its stored size is what compressing ``nbytes`` can give, a zstd
    frame declares exactly ``nbytes`` and a deflate stream that could inflate
    past a few MiB does not inflate past ``nbytes``.
    """

    def __init__(
        self, ds: h5py.Dataset, code: int, comp_index: int, fletcher: bool,
        pread: Callable[[int, int], bytes], where: str,
    ):
        """``pread(size, offset)`` reads the file's bytes; ``where`` names the file in errors."""
        self.ds, self.code, self.comp_bit, self.fletcher = ds, code, 1 << comp_index, fletcher
        self.per, self.rest = ds.chunks[0], (0,) * (ds.ndim - 1)
        self.nbytes = int(np.prod(ds.chunks)) * ds.dtype.itemsize
        self.pread, self.where = pread, where
        self.ok = np.zeros(-(-ds.shape[0] // self.per), bool)

    def check_rows(self, start: int, stop: int, what: str = "") -> None:
        """Check the chunks holding rows ``start:stop``; ``what`` (e.g. "image 7") names them in errors."""
        for c in range(start // self.per, -(-stop // self.per)):
            if not self.ok[c]:
                info = self.ds.id.get_chunk_info_by_coord((c * self.per, *self.rest))
                self._verify(c, info.byte_offset, info.size, info.filter_mask, what)

    def check_all(self) -> None:
        if self.ok.all():
            return
        found: list[tuple[int, int, int, int]] = []
        self.ds.id.chunk_iter(lambda i: found.append((i.chunk_offset[0], i.byte_offset, i.size, i.filter_mask)))
        if len(found) != len(self.ok):
            raise CorruptStoreError(f"{self.where}: {self.ds.name} lacks stored chunks")
        for row, offset, size, mask in found:
            c, r = divmod(row, self.per)
            if r or not 0 <= c < len(self.ok):
                raise CorruptStoreError(f"{self.where}: {self.ds.name} has a chunk at row {row}")
            if not self.ok[c]:
                self._verify(c, offset, size, mask)

    def _verify(self, c: int, offset, size, mask, what: str = "") -> None:
        if not what and self.ds.name == "/images":
            last = min(self.ds.shape[0], (c + 1) * self.per) - 1
            what = f"image {last}" if last == c * self.per else f"images {c * self.per} to {last}"
        where = f"{self.where}: {what + ', ' if what else ''}chunk {c} of {self.ds.name}"
        tail = 4 if self.fletcher else 0
        if offset is None or size is None or mask & ~self.comp_bit:
            raise CorruptStoreError(f"{where} is missing or skipped a filter")
        if mask & self.comp_bit:  # the compressor was skipped (optional filter): stored raw
            if size != self.nbytes + tail:
                raise CorruptStoreError(f"{where} stores {size} bytes for {self.nbytes} uncompressed")
            self.ok[c] = True
            return
        if size > self.nbytes + self.nbytes // 16 + 1024 + tail or size <= tail:
            raise CorruptStoreError(f"{where} stores {size} bytes, more than compressing {self.nbytes} gives")
        if self.code == FILTER_ZSTD:
            import zstandard

            head = self.pread(min(18, size - tail), offset)
            try:
                declared = zstandard.frame_content_size(head)
            except zstandard.ZstdError:
                declared = -1
            if declared != self.nbytes:
                raise CorruptStoreError(f"{where}: its zstd frame declares {declared} bytes, not {self.nbytes}")
        elif (self.code == h5py.h5z.FILTER_DEFLATE
              and (size - tail) * limits.DEFLATE_EXPANSION > limits.HDF5_INFLATE_FREE):
            body = self.pread(size - tail, offset)
            try:
                out = zlib.decompressobj().decompress(body, self.nbytes + 1)
            except zlib.error:
                raise CorruptStoreError(f"{where}: its deflate stream is damaged") from None
            if len(out) > self.nbytes:
                raise CorruptStoreError(f"{where} inflates past its {self.nbytes} bytes")
        self.ok[c] = True
