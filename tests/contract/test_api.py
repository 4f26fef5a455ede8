"""The public API of docs/design.md, line by line, on every backend and compression."""

from __future__ import annotations

import numpy as np
import pytest

import imgbench
from imgbench.storage import registry

from ..conftest import dtypes_for, same, sample, store_path, supports
from .backends import BACKENDS, KITS


def test_every_registered_backend_has_a_kit():
    """The conformance suite runs every registered backend through its kit (tests/contract/backends.py)."""
    missing = [name for name in imgbench.backends() if name not in KITS]
    assert not missing, f"registered backends without a conformance kit in tests/contract/backends.py: {missing}"
    for name, kit in KITS.items():
        assert kit.name == name and name in imgbench.backends(), f"kit {name!r} is for no registered backend"

SHAPES = [(7, 5), (7, 5, 1), (6, 9, 2), (8, 4, 3), (5, 5, 4), (1, 1), (1, 13, 3)]


def test_version_and_backends():
    assert isinstance(imgbench.__version__, str) and imgbench.__version__
    names = imgbench.backends()
    assert names == sorted(names)
    assert {"disk", "hdf5", "lmdb"} <= set(names)


def test_error_classes_have_the_stated_bases():
    assert issubclass(imgbench.InvalidImageError, (imgbench.ImgbenchError, ValueError))
    assert issubclass(imgbench.InvalidImageError, ValueError)
    assert issubclass(imgbench.UnsupportedError, ValueError)
    assert issubclass(imgbench.UnsupportedError, imgbench.ImgbenchError)
    assert issubclass(imgbench.StoreExistsError, FileExistsError)
    assert issubclass(imgbench.StoreExistsError, imgbench.ImgbenchError)
    assert issubclass(imgbench.StoreNotFoundError, FileNotFoundError)
    assert issubclass(imgbench.StoreNotFoundError, imgbench.ImgbenchError)
    assert issubclass(imgbench.CorruptStoreError, imgbench.ImgbenchError)


def test_round_trip_every_dtype_and_shape(tmp_path, config):
    backend, compression = config
    images = [sample(shape, dtype, seed=i) for i, (shape, dtype) in enumerate(
        (s, d) for s in SHAPES for d in dtypes_for(compression) if supports(compression, d, s))]
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        for im in images:
            s.append(im)
        assert len(s) == len(images)
    with imgbench.open(path) as s:
        assert s.backend == backend and s.compression == compression
        assert len(s) == len(images)
        for i, im in enumerate(images):
            assert same(s[i], im), (i, im.shape, im.dtype)
        back = s.read_many()
        assert isinstance(back, list) and all(same(b, im) for b, im in zip(back, images))
        assert s.labels is None


def test_stacked_batch_round_trip_with_labels(tmp_path, config):
    backend, compression = config
    batch = np.stack([sample((16, 12, 3), np.uint8, seed=i) for i in range(40)])
    labels = np.arange(40) * 7 - 100
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "x", backend=backend, compression=compression) as s:
        s.extend(batch, labels=labels)
    with imgbench.open(path) as s:
        out = s.read_many()
        assert isinstance(out, np.ndarray) and same(out, batch)
        assert s.labels.dtype == np.int64 and s.labels.tolist() == labels.tolist()
        order = [39, 0, 5, 5, -1, 17]
        picked = s.read_many(order)
        assert same(picked, batch[order])
        assert same(s[-40], batch[0])
        assert same(s[3:9:2], batch[3:9:2])


def test_extend_from_iterables_and_generators(tmp_path, backend):
    path = store_path(tmp_path, backend)
    images = [sample((4 + i, 6, 3), np.uint16, seed=i) for i in range(10)]
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(images[:4], labels=[1, 2, 3, 4])
        s.extend((im for im in images[4:]), labels=iter([5, 6, 7, 8, 9, 10]))
    with imgbench.open(path) as s:
        assert len(s) == 10
        assert all(same(s[i], im) for i, im in enumerate(images))
        assert s.labels.tolist() == list(range(1, 11))
        many = s.read_many([9, 0])
        assert isinstance(many, list) and same(many[0], images[9]) and same(many[1], images[0])


def test_attrs_persist_and_are_json(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend) as s:
        s.append(np.zeros((2, 2), np.uint8))
        s.attrs["modality"] = "CT"
        s.attrs["spacing"] = (0.5, 0.5)
        s.attrs["nested"] = {"a": [1, None, True], "ü": "∆"}
        with pytest.raises(imgbench.UnsupportedError, match="JSON"):
            s.attrs["bad"] = object()
        with pytest.raises(imgbench.UnsupportedError, match="JSON"):
            s.attrs["nan"] = float("nan")
    with imgbench.open(path) as s:
        assert dict(s.attrs) == {"modality": "CT", "spacing": [0.5, 0.5], "nested": {"a": [1, None, True], "ü": "∆"}}
        with pytest.raises(imgbench.UnsupportedError, match="read-only"):
            s.attrs["x"] = 1
    with imgbench.open(path, "a") as s:
        del s.attrs["nested"]
        s.attrs["modality"] = "MR"
    with imgbench.open(path) as s:
        assert dict(s.attrs) == {"modality": "MR", "spacing": [0.5, 0.5]}


def test_empty_store(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend) as s:
        s.attrs["empty"] = True
    with imgbench.open(path) as s:
        assert len(s) == 0 and s.labels is None and s.read_many() == []
        with pytest.raises(IndexError):
            s[0]
    with imgbench.open(path, "a") as s:
        s.append(np.ones((3, 3), np.uint8), label=2)
    with imgbench.open(path) as s:
        assert len(s) == 1 and s.labels.tolist() == [2]


def test_indexing_errors(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.zeros((3, 4, 4), np.uint8))
    with imgbench.open(path) as s:
        for bad in (3, -4, 10**12):
            with pytest.raises(IndexError):
                s[bad]
        with pytest.raises(IndexError):
            s.read_many([0, 3])
        with pytest.raises(TypeError):
            s["0"]
        with pytest.raises(TypeError):
            s.read_many([0.5])
        assert s.read_many([]) == []
        assert same(s[np.int64(2)], np.zeros((4, 4), np.uint8))


def test_suffix_selects_backend_and_read_needs_no_backend(tmp_path):
    named = [(kit.suffix, kit.name) for kit in KITS.values() if kit.suffix]
    assert {(".lmdb", "lmdb"), (".h5", "hdf5")} <= set(named)
    for suffix, backend in [*named, (".hdf5", "hdf5")]:
        path = tmp_path / f"s{suffix}"
        with imgbench.open(path, "w") as s:
            s.append(np.zeros((2, 2), np.uint8))
        with imgbench.open(path) as s:
            assert s.backend == backend
    with pytest.raises(imgbench.UnsupportedError, match="backend="):
        imgbench.open(tmp_path / "plain", "w")


def test_default_compressions(tmp_path, kit):
    expected = {"disk": "png", "lmdb": "none", "hdf5": "none"}  # docs/design.md
    assert kit.default_compression == expected.get(kit.name, kit.default_compression)
    with imgbench.open(kit.path(tmp_path, "d"), "w", backend=kit.name) as s:
        assert s.compression == kit.default_compression
        assert kit.default_compression == registry.get(kit.name).compressions[0]


def test_levels_are_recorded(tmp_path):
    for backend, compression, level in (("disk", "png", 9), ("lmdb", "zstd", 19), ("hdf5", "gzip", 1)):
        path = store_path(tmp_path, backend, f"lvl-{compression}")
        with imgbench.open(path, "w", backend=backend, compression=compression, level=level) as s:
            s.append(sample((20, 20), np.uint16))
        with imgbench.open(path) as s:
            assert (s.compression, s.level) == (compression, level)
            assert same(s[0], sample((20, 20), np.uint16))


def test_iteration_and_repr(tmp_path, backend):
    path = store_path(tmp_path, backend)
    batch = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(batch)
        assert "mode='w'" in repr(s)
    with imgbench.open(path) as s:
        assert [im.tolist() for im in s] == batch.tolist()
        assert backend in repr(s)


def test_mixed_dtypes_in_one_store(tmp_path, backend):
    path = store_path(tmp_path, backend)
    images = [sample((5, 5), np.uint8), sample((5, 5), np.uint16), sample((5, 5, 3), np.uint8)]
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(images)
    with imgbench.open(path) as s:
        assert all(same(a, b) for a, b in zip(s.read_many(), images))


def test_uniform_store_that_turns_ragged_on_append(tmp_path, backend):
    """A store of one shape that later gets another keeps every image exact."""
    path = store_path(tmp_path, backend)
    first = np.stack([sample((8, 8, 3), np.uint8, seed=i) for i in range(50)])
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(first, labels=np.zeros(50, int))
    odd = sample((3, 11), np.uint16)
    with imgbench.open(path, "a") as s:
        s.append(odd, label=9)
        s.extend(first[:2], labels=[1, 1])
    with imgbench.open(path) as s:
        out = s.read_many()
        assert len(out) == 53
        assert all(same(out[i], first[i]) for i in range(50))
        assert same(out[50], odd) and same(out[52], first[1])
        assert s.labels.tolist() == [0] * 50 + [9, 1, 1]


def test_big_endian_and_strided_input_is_stored_by_value(tmp_path, backend):
    path = store_path(tmp_path, backend)
    base = sample((10, 12), np.uint16)
    with imgbench.open(path, "w", backend=backend) as s:
        s.append(base.astype(">u2"))
        s.append(base[::2, ::3])
        s.append(np.asfortranarray(base))
    with imgbench.open(path) as s:
        assert np.array_equal(s[0], base) and s[0].dtype == np.uint16
        assert same(s[1], np.ascontiguousarray(base[::2, ::3]))
        assert same(s[2], base)


def test_detection_recognises_only_its_own_stores(tmp_path, kit):
    """Each backend's ``detect`` claims its own stores and no other backend's (registry.detect is unambiguous)."""
    stores = {}
    for other in BACKENDS:
        stores[other] = KITS[other].path(tmp_path, f"s-{other}") if other in KITS else tmp_path / f"s-{other}"
        with imgbench.open(stores[other], "w", backend=other) as s:
            s.append(np.zeros((4, 4), np.uint8))
    cls = registry.get(kit.name)
    assert registry.detect(stores[kit.name]) is cls
    for other, path in stores.items():
        assert bool(cls.detect(path)) == (other == kit.name), (kit.name, other)
    with imgbench.open(stores[kit.name]) as s:
        assert s.backend == kit.name and len(s) == 1


def test_disk_usage_counts_one_file_per_image(tmp_path, kit):
    path = kit.path(tmp_path)
    with imgbench.open(path, "w", backend=kit.name) as s:
        s.extend(np.zeros((25, 8, 8), np.uint8))
    usage = imgbench.disk_usage(path)
    assert usage["files"] == kit.expected_files(25)
    assert usage["apparent"] >= 25 * 8 * 8 * (kit.name != "disk") and usage["allocated"] > 0


def _refuse_unpickling(*args, **kwargs):
    raise AssertionError("a store was unpickled: stored data must never run code when read")


def test_reading_never_unpickles(tmp_path, config, monkeypatch):
    """Every backend and codec: open, read everything, labels, attrs and checksums with pickle disabled."""
    import pickle

    backend, compression = config
    path = tmp_path / f"s-{backend}"
    images = [sample((6, 5, 3), np.uint8, seed=k) for k in range(4)] + [sample((7, 4), np.uint16)]
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=[1, 2, 3, 4, 5])
        s.attrs["note"] = {"nested": [1, "two"]}
    for name in ("loads", "load", "Unpickler"):
        monkeypatch.setattr(pickle, name, _refuse_unpickling)
    with imgbench.open(path, verify=True) as s:
        got = s.read_many()
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, images))
        assert list(s.labels) == [1, 2, 3, 4, 5] and s.attrs["note"] == {"nested": [1, "two"]}
        assert s.checksums is not None and len(s.checksums) == 5
