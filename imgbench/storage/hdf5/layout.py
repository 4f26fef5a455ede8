"""Names and numbers of the HDF5 layout: the file signature, the filters imgbench writes, chunk sizes, levels."""

from __future__ import annotations

import h5py

from imgbench.core.levels import LevelRange

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: compression -> its levels (None: it takes none)
LEVELS = {"none": None, "gzip": LevelRange(0, 9, 4), "lzf": None, "zstd": LevelRange(1, 22, 3)}
#: chunk of uncompressed data: read with the chunk cache off, one small direct read per image
RAW_CHUNK_BYTES = 1 << 20
#: chunk of compressed images (or one image): reading one decompresses little else
PACKED_CHUNK_BYTES = 16 << 10
#: chunk of the compressed ragged ``data`` dataset
PACKED_DATA_CHUNK_BYTES = 64 << 10
#: what h5py raises for a damaged file
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
#: chunk cache for compressed datasets: 4 MiB (~256 chunks of 16 KiB), prime slot count
COMPRESSED_CACHE_BYTES = 4 << 20
COMPRESSED_CACHE_SLOTS = 25013
#: rows per chunk of the small per-image datasets (labels, checksums)
ROW_CHUNK = 1 << 13
#: pixel dtypes imgbench writes (little-endian or byte-order free)
IMAGE_DTYPES = ("|u1", "<u2", "<i2", "<f4")
#: HDF5 filters imgbench writes; any other (shuffle, a plugin HDF5 would look for on disk) is refused
FILTER_ZSTD = 32015
COMPRESSORS = (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_LZF, FILTER_ZSTD)
ALLOWED_FILTERS = (*COMPRESSORS, h5py.h5z.FILTER_FLETCHER32)
#: largest chunk (uncompressed bytes) accepted beyond one image: imgbench writes ~1 MiB
#: uncompressed and ~16-64 KiB compressed chunks (or one image), the ``chunks`` option aside
MAX_CHUNK_BYTES = 64 << 20
