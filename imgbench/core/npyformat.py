"""One image as a NumPy ``.npy`` file (format 1.0, little-endian, C order, no pickle), both ways.

The ``none`` compression of the disk and tar backends stores each image as the
file ``np.save`` writes, so any NumPy opens it. Reading checks the header against
what the store recorded before any pixel is copied.
"""

from __future__ import annotations

import functools
import io

import numpy as np

from imgbench.core import codecs
from imgbench.core.errors import CorruptStoreError


@functools.lru_cache(maxsize=256)
def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The exact header ``np.save`` writes for a little-endian C-order array of ``shape`` and ``dtype``."""
    # A broadcast view: the header is built from shape and dtype without allocating the image.
    probe = np.broadcast_to(np.zeros((), np.dtype(dtype).newbyteorder("<")), shape)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(probe))
    return buf.getvalue()


def npy_bytes(image: np.ndarray) -> bytes:
    """The ``.npy`` file ``np.save`` would write for ``image`` (little-endian), its header built once per kind."""
    le = image.dtype.newbyteorder("<")
    return npy_header(image.shape, image.dtype) + np.ascontiguousarray(image, dtype=le).tobytes()


def npy_decode(data: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The image a stored ``.npy`` file holds; CorruptStoreError unless it is ``shape``/``dtype`` exactly."""
    header = npy_header(tuple(shape), np.dtype(dtype))
    if len(data) > len(header) and data[: len(header)] == header:
        # The header this code writes, byte for byte: skip parsing it (RawCodec checks the length).
        return codecs.CODECS["none"].decode(memoryview(data)[len(header) :], dtype, shape)
    data = bytes(data)
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_2_0(fp)
    except Exception as exc:  # numpy's header parser: ValueError, SyntaxError, tokenize.TokenError, ...
        raise CorruptStoreError(f"stored .npy header is damaged: {type(exc).__name__}: {exc}") from None
    if fortran or tuple(stored_shape) != tuple(shape) or np.dtype(stored_dtype) != np.dtype(dtype).newbyteorder("<"):
        raise CorruptStoreError(
            f"stored .npy holds {stored_shape} {stored_dtype}, the store recorded {shape} {np.dtype(dtype)}"
        )
    return codecs.CODECS["none"].decode(memoryview(data)[fp.tell() :], dtype, shape)
