"""core.npyformat: images as the .npy files np.save writes, and back, checked against the store's record."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgbench.core.errors import CorruptStoreError
from imgbench.core.npyformat import npy_bytes, npy_decode, npy_header

DTYPES = [np.dtype(d) for d in ("uint8", "uint16", "int16", "float32")]
shapes = st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
                   st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4)))
images = st.sampled_from(DTYPES).flatmap(lambda dt: shapes.flatmap(lambda sh: hnp.arrays(dt, sh)))


def np_save(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<")), allow_pickle=False)
    return buf.getvalue()


@given(image=images)
def test_bytes_are_what_np_save_writes_and_decode_back(image):
    data = npy_bytes(image)
    assert data == np_save(image)
    assert data.startswith(npy_header(image.shape, image.dtype))
    got = npy_decode(data, image.dtype, image.shape)
    assert got.dtype == image.dtype and got.shape == image.shape and got.tobytes() == image.tobytes()
    assert got.flags.writeable and got.flags.c_contiguous
    view = npy_decode(memoryview(data), image.dtype, image.shape)
    assert view.tobytes() == image.tobytes()


@given(image=images)
def test_a_header_written_otherwise_is_parsed_and_checked(image):
    """A file not byte-identical to ours (numpy's version 2.0 header) still decodes when it says the same."""
    buf = io.BytesIO()
    le = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("<"))
    np.lib.format.write_array(buf, le, version=(2, 0), allow_pickle=False)
    assert npy_decode(buf.getvalue(), image.dtype, image.shape).tobytes() == image.tobytes()


def test_a_file_of_another_shape_or_dtype_is_corrupt():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    data = npy_bytes(image)
    with pytest.raises(CorruptStoreError, match=r"stored .npy holds \(3, 4\) uint16, the store recorded \(4, 3\) uint16"):
        npy_decode(data, np.dtype(np.uint16), (4, 3))
    with pytest.raises(CorruptStoreError, match="the store recorded"):
        npy_decode(data, np.dtype(np.int16), (3, 4))
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(image.astype("<u2")))
    with pytest.raises(CorruptStoreError, match="the store recorded"):
        npy_decode(fortran.getvalue(), np.dtype(np.uint16), (3, 4))


@pytest.mark.parametrize("damage", [lambda d: d[:5], lambda d: b"\x93NUMPY\x01\x00" + d[8:].replace(b"(", b"[", 1)])
def test_a_damaged_header_is_corrupt(damage):
    data = npy_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(CorruptStoreError, match=r"stored .npy header is damaged|stored \.npy holds"):
        npy_decode(damage(data), np.dtype(np.uint8), (2, 3))


def test_a_short_payload_behind_our_header_is_corrupt():
    data = npy_bytes(np.zeros((2, 3), np.float32))
    with pytest.raises(CorruptStoreError, match="raw image holds 20 bytes where 24 were stored"):
        npy_decode(data[:-4], np.dtype(np.float32), (2, 3))
