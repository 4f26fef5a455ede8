"""The per-image digest is seeded with the image's label, so a changed label is found on every backend.

Each backend keeps its labels somewhere of its own, most without any check of
their own (the disk sidecar's ``image_labels``, the npy and tar index label
columns, the lmdb label chunks, the hdf5 ``labels`` dataset, the zarr
``labels`` array). Here ONE label is changed in that storage, with the plain
tool for the format (json, numpy, lmdb, h5py, zarr), so every container check
still passes and the pixels are untouched: only the seeded digest can tell.
A backend added to the registry fails here until it says where its labels live.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest
import zarr

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.cli import main
from imgbench.core import checksum
from imgbench.storage import npy
from imgbench.storage import tar as tar_backend
from imgbench.storage.disk import SIDECAR
from imgbench.storage.lmdb import LABELS_PREFIX

from .conftest import same, sample

#: negative ones too: they seed the digest as their two's complement
LABELS = [7, -3, 12, 0, -1, 9]
DAMAGED = 1
#: one flipped bit: -3 -> -4
CHANGED = LABELS[DAMAGED] ^ 1
SUFFIX = {"hdf5": ".h5", "lmdb": ".lmdb", "zarr": ".zarr"}


def _set_disk(path: Path, i: int, label: int) -> None:
    meta = json.loads((path / SIDECAR).read_text())
    meta["image_labels"][i] = label
    (path / SIDECAR).write_text(json.dumps(meta))


def _set_hdf5(path: Path, i: int, label: int) -> None:
    with h5py.File(path, "r+") as f:
        f["labels"][i] = label


def _set_lmdb(path: Path, i: int, label: int) -> None:
    key = LABELS_PREFIX + b"%08d" % 0
    assert key == b"~imgbench/labels/00000000"
    env = lmdb.open(str(path), max_dbs=2)
    try:
        with env.begin(write=True) as txn:
            labels = np.frombuffer(txn.get(key), "<i8").copy()
            labels[i] = label
            txn.put(key, labels.tobytes())
    finally:
        env.close()


def _set_npy(path: Path, i: int, label: int) -> None:
    rows = np.fromfile(path / npy.INDEX, dtype=npy.INDEX_DTYPE)
    rows["label"][i] = label
    rows.tofile(path / npy.INDEX)


def _set_tar(path: Path, i: int, label: int) -> None:
    assert tar_backend.INDEX == "imgbench-tar.index"
    rows = np.fromfile(path / tar_backend.INDEX, "<i8").reshape(-1, len(tar_backend.INDEX_COLUMNS))
    rows[i, tar_backend.INDEX_COLUMNS.index("label")] = label
    rows.astype("<i8").tofile(path / tar_backend.INDEX)


def _set_zarr(path: Path, i: int, label: int) -> None:
    labels = zarr.open_array(str(path / "labels"), mode="r+")
    labels[i] = label


SET_LABEL = {
    "disk": _set_disk,
    "hdf5": _set_hdf5,
    "lmdb": _set_lmdb,
    "npy": _set_npy,
    "tar": _set_tar,
    "zarr": _set_zarr,
}


@pytest.mark.parametrize("backend", imgbench.backends())
def test_changed_label_is_a_damaged_image(tmp_path, backend, capsys):
    assert backend in SET_LABEL, f"say where backend {backend!r} keeps its labels"
    path = tmp_path / f"s{SUFFIX.get(backend, '')}"
    images = np.stack([sample((10, 8, 3), np.uint8, seed=i) for i in range(len(LABELS))])
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(images, labels=LABELS)
    with imgbench.open(path) as s:
        assert s.labels.tolist() == LABELS
        assert np.array_equal(s.checksums, checksum.digests(images, LABELS))
    assert verify(path).ok

    SET_LABEL[backend](path, DAMAGED, CHANGED)
    others = [i for i in range(len(LABELS)) if i != DAMAGED]

    # verify() and the CLI report exactly that image, and nothing else as a problem.
    report = verify(path)
    assert report.checksummed and report.images == len(LABELS) and not report.ok
    assert sorted(report.damaged) == [DAMAGED] and report.problems == []
    assert "label" in report.damaged[DAMAGED]
    assert main(["verify", "-q", str(path)]) == 1
    assert f"damaged image {DAMAGED}" in capsys.readouterr().out

    # verify=True: reading that image raises, naming it; the others read whole.
    with imgbench.open(path, verify=True) as s:
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
            s[DAMAGED]
        with pytest.raises(imgbench.CorruptStoreError, match=rf"image {DAMAGED}\b"):
            s.read_many()
        for i in others:
            assert same(s[i], images[i])
        assert same(s.read_many(others), images[others])

    # verify=False (the default): the pixels are intact and the wrong label comes back unnoticed.
    with imgbench.open(path) as s:
        labels = s.labels.tolist()
        assert labels[DAMAGED] == CHANGED != LABELS[DAMAGED]
        assert labels[:DAMAGED] + labels[DAMAGED + 1 :] == LABELS[:DAMAGED] + LABELS[DAMAGED + 1 :]
        assert same(s[DAMAGED], images[DAMAGED]) and same(s.read_many(), images)
        # the stored digest is still that of the pixels with the ORIGINAL label
        assert s.checksums[DAMAGED] == checksum.digests(images[DAMAGED : DAMAGED + 1], [LABELS[DAMAGED]])[0]
        assert s.checksums[DAMAGED] != checksum.digests(images[DAMAGED : DAMAGED + 1], [CHANGED])[0]

    # The original label back: the store verifies again.
    SET_LABEL[backend](path, DAMAGED, LABELS[DAMAGED])
    assert verify(path).ok
