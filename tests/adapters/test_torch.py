"""imgbench.torch.StoreDataset in real DataLoader workers, forked and spawned.

Spawned workers each import torch (seconds), so the spawn cases read both
stores through one DataLoader (a ConcatDataset) per case; forked workers are
cheap and get one DataLoader per backend.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import ConcatDataset, DataLoader  # noqa: E402

import imgbench  # noqa: E402
from imgbench.torch import StoreDataset  # noqa: E402

from ..conftest import sample  # noqa: E402

N = 23  # not a multiple of the batch size: the last batch is short
BATCH = 5
SHAPES = {"lmdb": (12, 10, 3), "hdf5": (9, 7), "npy": (6, 5, 4)}
DTYPES = {"lmdb": np.uint8, "hdf5": np.uint16, "npy": np.float32}
FIRST_LABEL = {"lmdb": 1000, "hdf5": 2000, "npy": 3000}  # labels tell every image of every store apart


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """backend -> (path, images, labels)."""
    root = tmp_path_factory.mktemp("torch")
    out = {}
    for backend, shape in SHAPES.items():
        images = np.stack([sample(shape, DTYPES[backend], seed=i) for i in range(N)])
        labels = FIRST_LABEL[backend] + np.arange(N)
        path = root / {"lmdb": "s.lmdb", "hdf5": "s.h5", "npy": "s-npy"}[backend]
        with imgbench.open(path, "w", backend=backend) as s:
            s.extend(images, labels=labels)
        out[backend] = (path, images, labels)
    return out


def collect(loader: DataLoader) -> tuple[list[np.ndarray], list[int]]:
    images, labels = [], []
    for batch_images, batch_labels in loader:
        assert batch_labels.dtype == torch.int64
        images.extend(im.numpy() for im in batch_images)
        labels.extend(batch_labels.tolist())
    return images, labels


def check_in_order(got_images, got_labels, want_images, want_labels):
    assert got_labels == list(want_labels)
    assert len(got_images) == len(want_images)
    for got, want in zip(got_images, want_images):
        assert got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


def check_each_once(got_images, got_labels, by_label):
    assert sorted(got_labels) == sorted(by_label), "every index exactly once"
    for image, label in zip(got_images, got_labels):
        want = by_label[label]
        assert image.dtype == want.dtype and image.tobytes() == want.tobytes()


@pytest.mark.parametrize("backend", ["lmdb", "hdf5", "npy"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_forked_workers_read_every_image(stores, backend, shuffle):
    path, images, labels = stores[backend]
    ds = StoreDataset(path)
    assert ds._store is None and len(ds) == N and ds.labelled
    # The parent reads first, so an open store crosses fork(): the workers must not use it.
    first, label = ds[0]
    assert first.numpy().tobytes() == images[0].tobytes() and label == labels[0]
    loader = DataLoader(ds, batch_size=BATCH, shuffle=shuffle, num_workers=2, multiprocessing_context="fork")
    got_images, got_labels = collect(loader)
    if shuffle:
        check_each_once(got_images, got_labels, dict(zip(labels.tolist(), images)))
        assert got_labels != sorted(got_labels)
    else:
        check_in_order(got_images, got_labels, images, labels)
    # The parent's store still works after its children came and went.
    assert ds[N - 1][0].numpy().tobytes() == images[-1].tobytes()
    ds.close()


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_spawned_workers_read_every_image_of_lmdb_and_hdf5(stores, shuffle):
    both = ["lmdb", "hdf5"]
    datasets = [StoreDataset(stores[b][0]) for b in both]
    # The two stores differ in shape and dtype, so a batch must not straddle them: one sample per batch.
    loader = DataLoader(
        ConcatDataset(datasets), batch_size=1, shuffle=shuffle, num_workers=2, multiprocessing_context="spawn"
    )
    got_images, got_labels = collect(loader)
    want_images = [im for b in both for im in stores[b][1]]
    want_labels = [int(x) for b in both for x in stores[b][2]]
    if shuffle:
        check_each_once(got_images, got_labels, dict(zip(want_labels, want_images)))
    else:
        check_in_order(got_images, got_labels, want_images, want_labels)


def test_pickles_as_path_and_options_only(stores):
    path, images, _ = stores["lmdb"]
    ds = StoreDataset(path, readahead=False)
    ds[3]  # opens a store in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 1000 and b"Environment" not in blob
    clone = pickle.loads(blob)
    assert clone._store is None and len(clone) == N and clone.options == {"readahead": False}
    assert clone[3][0].numpy().tobytes() == images[3].tobytes()
    clone.close()
    ds.close()


def test_unlabelled_store_transform_and_default_collate(tmp_path):
    path = tmp_path / "u.h5"
    images = np.stack([sample((4, 6, 3), np.uint8, seed=i) for i in range(7)])
    with imgbench.open(path, "w") as s:
        s.extend(images)

    def to_chw_float(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1).float() / 255

    ds = StoreDataset(path, transform=to_chw_float)
    assert not ds.labelled
    x, y = next(iter(DataLoader(ds, batch_size=7)))
    assert x.shape == (7, 3, 4, 6) and x.dtype == torch.float32
    assert y.tolist() == [-1] * 7
    assert torch.equal(x, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    raw = StoreDataset(path)
    image, label = raw[-1]
    assert label == -1 and image.dtype == torch.uint8 and image.numpy().tobytes() == images[-1].tobytes()
    with pytest.raises(IndexError):
        raw[7]


def test_ragged_store_one_sample_per_batch(tmp_path):
    path = tmp_path / "r.lmdb"
    images = [sample((3, 4), np.int16, seed=0), sample((5, 2, 2), np.float32, seed=1)]
    with imgbench.open(path, "w") as s:
        s.extend(images, labels=[4, 9])
    got = list(DataLoader(StoreDataset(path), batch_size=None))
    assert [int(y) for _, y in got] == [4, 9]
    assert all(x.numpy().tobytes() == im.tobytes() and x.shape == im.shape for (x, _), im in zip(got, images))


def test_import_imgbench_does_not_import_torch():
    code = "import sys, imgbench; imgbench.open; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_missing_torch_is_an_import_error_with_the_install_hint():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # what an environment without torch looks like to import
        "try:\n    import imgbench.torch\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'imgbench[torch]'" in out.stdout, out.stdout + out.stderr
