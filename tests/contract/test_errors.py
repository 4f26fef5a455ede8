"""Every bad input of docs/design.md gets a clear error, and the store is unchanged afterwards."""

from __future__ import annotations

import numpy as np
import pytest

import imgbench
from imgbench.storage import registry

from ..conftest import sample, snapshot, store_path
from .backends import CONFIGS, KITS, config_id

BAD_IMAGES = [
    (np.zeros((4, 4), np.int64), "dtype int64"),
    (np.zeros((4, 4), np.float64), "dtype float64"),
    (np.zeros((4, 4), bool), "dtype bool"),
    (np.zeros((4, 4), np.complex64), "dtype complex64"),
    (np.array([[object()]]), "dtype object"),
    (np.zeros(4, np.uint8), "2-D"),
    (np.zeros((2, 2, 2, 2), np.uint8), "for a batch"),
    (np.zeros((4, 4, 5), np.uint8), "1 to 4 channels"),
    (np.zeros((3, 8, 8), np.uint8), "channels last"),
    (np.zeros((0, 4), np.uint8), "empty"),
    (np.zeros((4, 0, 3), np.uint8), "empty"),
    ([[1, 2], [3]], "not an array"),
    ("not an image", "dtype <U12"),
]


@pytest.fixture
def existing(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.stack([sample((5, 6), np.uint8, seed=i) for i in range(4)]), labels=[1, 2, 3, 4])
        s.attrs["k"] = "v"
    return path


@pytest.mark.parametrize("image,message", BAD_IMAGES, ids=[m for _, m in BAD_IMAGES])
def test_bad_images_are_rejected_and_nothing_is_lost(existing, image, message):
    before = snapshot(existing)
    with imgbench.open(existing, "a") as s:
        with pytest.raises(imgbench.InvalidImageError, match=message):
            s.append(image, label=0)
        assert len(s) == 4
    assert snapshot(existing) == before


def test_invalid_image_error_is_a_value_error(existing):
    with imgbench.open(existing, "a") as s:
        with pytest.raises(ValueError):
            s.append(np.zeros((4, 4), np.float64), label=1)


@pytest.mark.parametrize(
    "batch,labels,message",
    [
        (np.zeros((0, 4, 4), np.uint8), None, "empty batch"),
        (np.zeros((4, 4), np.uint8), None, "single image use append"),
        (np.zeros((3, 4, 4), np.uint8), [1, 2], "2 entries for 3 images"),
        (np.zeros((3, 4, 4), np.uint8), [1.5, 2, 3], "integers"),
        (np.zeros((3, 4, 4), np.uint8), [[1], [2], [3]], "1-D"),
        (np.zeros((3, 4, 4), np.int64), [1, 2, 3], "dtype int64"),
        (np.zeros((3, 4, 4, 6), np.uint8), [1, 2, 3], "1 to 4 channels"),
    ],
)
def test_bad_batches(existing, batch, labels, message):
    before = snapshot(existing)
    with imgbench.open(existing, "a") as s:
        with pytest.raises(imgbench.InvalidImageError, match=message):
            s.extend(batch, labels=labels if labels is not None else [0] * len(batch))
    assert snapshot(existing) == before


def test_label_count_mismatch_from_iterables(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with pytest.raises(imgbench.InvalidImageError, match="one label per image"):
        with imgbench.open(path, "w", backend=backend) as s:
            s.extend([np.zeros((2, 2), np.uint8)] * 3, labels=[1, 2])
    with pytest.raises(imgbench.InvalidImageError, match="more images followed"):
        with imgbench.open(path, "w", backend=backend) as s:
            s.extend((np.zeros((2, 2), np.uint8) for _ in range(3)), labels=[1, 2])
    with pytest.raises(imgbench.InvalidImageError, match="2 images"):
        with imgbench.open(path, "w", backend=backend) as s:
            s.extend((np.zeros((2, 2), np.uint8) for _ in range(2)), labels=[1, 2, 3])


def test_labels_all_or_none(existing, tmp_path, backend):
    before = snapshot(existing)
    with imgbench.open(existing, "a") as s:
        with pytest.raises(imgbench.InvalidImageError, match="labels every image"):
            s.append(np.zeros((5, 6), np.uint8))
        with pytest.raises(imgbench.InvalidImageError, match="labels every image"):
            s.extend(np.zeros((2, 5, 6), np.uint8))
    assert snapshot(existing) == before
    path = store_path(tmp_path, backend, "unlabelled")
    with imgbench.open(path, "w", backend=backend) as s:
        s.append(np.zeros((2, 2), np.uint8))
        with pytest.raises(imgbench.InvalidImageError, match="unlabelled"):
            s.append(np.zeros((2, 2), np.uint8), label=1)
        for bad in (1.0, "3", True, None.__class__):
            with pytest.raises(imgbench.InvalidImageError):
                s.append(np.zeros((2, 2), np.uint8), label=bad)
        with pytest.raises(imgbench.InvalidImageError, match="int64"):
            s.append(np.zeros((2, 2), np.uint8), label=2**63)


@pytest.mark.parametrize("backend,compression", [c for c in CONFIGS if c[1] == "png"], ids=config_id)
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_png_refuses_dtypes_it_cannot_hold(existing_png_factory, backend, compression, dtype):
    path = existing_png_factory(backend, compression)
    before = snapshot(path)
    with imgbench.open(path, "a") as s:
        with pytest.raises(imgbench.UnsupportedError, match="cannot store"):
            s.append(np.zeros((3, 3), dtype), label=0)
    assert snapshot(path) == before


@pytest.fixture
def existing_png_factory(tmp_path):
    def make(backend, compression):
        path = store_path(tmp_path, backend, f"png-{backend}")
        with imgbench.open(path, "w", backend=backend, compression=compression) as s:
            s.append(np.zeros((3, 3), np.uint16), label=1)
        return path

    return make


def test_unknown_backend_compression_level_option_mode(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with pytest.raises(imgbench.UnsupportedError, match="unknown backend 'tiff'.*disk"):
        imgbench.open(path, "w", backend="tiff")
    with pytest.raises(imgbench.UnsupportedError, match="compression 'jpeg'.*choose one of"):
        imgbench.open(path, "w", backend=backend, compression="jpeg")
    with pytest.raises(imgbench.UnsupportedError, match="unknown option.*wibble"):
        imgbench.open(path, "w", backend=backend, wibble=1)
    with pytest.raises(imgbench.UnsupportedError, match="mode"):
        imgbench.open(path, "rw", backend=backend)
    with pytest.raises(imgbench.UnsupportedError, match="takes no level"):
        imgbench.open(path, "w", backend=backend, compression="none", level=3)
    import os

    assert not os.path.lexists(path), "nothing is written before the arguments are checked"


@pytest.mark.parametrize("backend,compression,bad", [
    (kit.name, compression, bad) for kit in KITS.values() for compression, bad in kit.bad_levels
])
def test_bad_levels(tmp_path, backend, compression, bad):
    """Each kit lists levels its backend must refuse; refused before anything is written."""
    with pytest.raises(imgbench.UnsupportedError, match="level"):
        imgbench.open(store_path(tmp_path, backend), "w", backend=backend, compression=compression, level=bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_option_values(tmp_path):
    with pytest.raises(imgbench.UnsupportedError, match="map_size"):
        imgbench.open(tmp_path / "a.lmdb", "w", map_size=-5)
    with pytest.raises(imgbench.UnsupportedError, match="chunks"):
        imgbench.open(tmp_path / "a.h5", "w", chunks=0)
    with pytest.raises(imgbench.UnsupportedError, match="threads"):
        imgbench.open(tmp_path / "d", "w", backend="disk", threads=0)


def test_reopening_with_other_compression_or_backend(existing, backend):
    offered = registry.get(backend).compressions
    # a one-compression backend (npy) still refuses any other name at open
    other = next((c for c in offered if c != offered[0]), "zstd" if offered[0] != "zstd" else "none")
    with pytest.raises(imgbench.UnsupportedError, match="compression is chosen when a store is created"):
        imgbench.open(existing, "a", compression=other)
    wrong = next(b for b in imgbench.backends() if b != backend)
    with pytest.raises(imgbench.UnsupportedError, match=f"is a {backend} store"):
        imgbench.open(existing, backend=wrong)
    with imgbench.open(existing, "a", compression=registry.get(backend).compressions[0]) as s:
        assert len(s) == 4


def test_path_errors(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(imgbench.StoreExistsError, match="file where a directory is expected"):
        imgbench.open(afile / "store.lmdb", "w")
    with pytest.raises(imgbench.CorruptStoreError, match="not an imgbench store|recognises"):
        imgbench.open(afile)
    with pytest.raises(imgbench.CorruptStoreError, match="recognises"):
        imgbench.open(tmp_path)
    with pytest.raises(imgbench.UnsupportedError, match="path must be"):
        imgbench.open(3)


def test_writer_cannot_be_pickled(tmp_path):
    import pickle

    with imgbench.open(tmp_path / "w.lmdb", "w") as s:
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(s)
