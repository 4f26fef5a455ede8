"""disk_usage: apparent bytes, allocated bytes and file counts."""

from __future__ import annotations

import os

import numpy as np
import pytest

import imgbench

from .conftest import store_path


def test_disk_usage_of_a_tree(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 5000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 10)
    os.link(tmp_path / "a", tmp_path / "sub" / "hardlink")
    os.symlink(tmp_path / "a", tmp_path / "sub" / "symlink")
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(10 << 20)
    usage = imgbench.disk_usage(tmp_path)
    assert usage["files"] == 3, "hard links once, symlinks not followed"
    assert usage["apparent"] == 5000 + 10 + (10 << 20)
    assert usage["allocated"] < (1 << 20), "a sparse file allocates (almost) nothing"
    assert usage["allocated"] >= 8192
    assert imgbench.disk_usage(tmp_path / "a") == {"apparent": 5000, "allocated": os.stat(tmp_path / "a").st_blocks * 512, "files": 1}
    with pytest.raises(imgbench.StoreNotFoundError):
        imgbench.disk_usage(tmp_path / "missing")


def test_disk_usage_counts_one_file_per_image(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.zeros((25, 8, 8), np.uint8))
    usage = imgbench.disk_usage(path)
    expected_files = {"disk": 26, "lmdb": 2, "hdf5": 1, "npy": 3, "tar": 3, "zarr": 5}[backend]
    assert usage["files"] == expected_files
    assert usage["apparent"] >= 25 * 8 * 8 * (backend != "disk") and usage["allocated"] > 0
