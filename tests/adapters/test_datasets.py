"""Built-in images: deterministic, the right kind, and compressible the way real images are."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgbench import UnsupportedError, datasets


def png_ratio(images: np.ndarray) -> float:
    return sum(len(imagecodecs.png_encode(im, level=6)) for im in images) / images.nbytes


def test_photos_shape_dtype_and_determinism():
    a = datasets.photos(40)
    assert a.shape == (40, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, datasets.photos(40))
    assert not np.array_equal(a, datasets.photos(40, seed=1))
    assert datasets.photos(3, shape=(20, 10)).shape == (3, 20, 10)
    assert datasets.photos(2, shape=(9, 9, 4)).shape == (2, 9, 9, 4)
    # Different images, using the whole range of grey levels between them.
    assert len({im.tobytes() for im in a}) == 40
    assert a.min() < 30 and a.max() > 225


def test_photos_compress_like_cifar():
    ratio = png_ratio(datasets.photos(200))
    assert 0.55 < ratio < 0.9, f"CIFAR-10 PNGs are ~0.75 of raw; built-in photos gave {ratio:.2f}"


def test_ct_slices_look_like_ct():
    ct = datasets.ct_slices(6, shape=(128, 128))
    assert ct.shape == (6, 128, 128) and ct.dtype == np.uint16
    assert np.array_equal(ct, datasets.ct_slices(6, shape=(128, 128)))
    hu = ct.astype(np.int32) - 1024
    assert (hu < -900).mean() > 0.1, "air around the body"
    assert ((hu > -150) & (hu < 100)).mean() > 0.2, "soft tissue and fat"
    assert (hu > 500).any(), "bone"
    assert ct.max() < 4096, "12-bit range like real scanners"
    ratio = png_ratio(ct)
    assert 0.25 < ratio < 0.75, f"16-bit CT PNGs are ~0.4-0.6 of raw; got {ratio:.2f}"
    # Neighbouring slices of one volume are alike; slices of different volumes less so.
    near = np.abs(hu[0] - hu[1]).mean()
    far = np.abs(hu[0] - (datasets.ct_slices(1, shape=(128, 128), start=64 * 5 + 40).astype(np.int32) - 1024)[0]).mean()
    assert near < far


def test_generate_by_name_and_labels():
    assert datasets.generate("cifar", 2).shape == (2, 32, 32, 3)
    assert datasets.generate("ct", 1).shape == (1, 512, 512)
    with pytest.raises(UnsupportedError, match="cifar"):
        datasets.generate("mnist", 1)
    labels = datasets.labels(1000, classes=10)
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), start=st.integers(0, 100))
def test_datasets_depend_only_on_index(n, start):
    whole = datasets.photos(start + n, shape=(8, 8, 3))
    assert np.array_equal(datasets.photos(n, shape=(8, 8, 3), start=start), whole[start:])
    assert np.array_equal(datasets.labels(n, start=start), datasets.labels(start + n)[start:])
