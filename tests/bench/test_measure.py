"""disk_usage: apparent bytes, allocated bytes and file counts."""

from __future__ import annotations

import os

import pytest

import imgbench



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
