"""A real full disk (ENOSPC on a small tmpfs) is one clear line that says so, on lmdb and hdf5.

Each writer runs in a fresh interpreter inside a private mount namespace (``unshare -m``)
holding a 4 MiB tmpfs, so the disk really fills and the interpreter's exit is checked too
(h5py used to print ``Exception ignored in: 'h5py._objects.ObjectID.__dealloc__'`` and crash
at exit). Needs root (CI runs as root); skipped with the reason otherwise.

- lmdb: LMDB reports the full disk at commit as ``mdb_txn_commit: Input/output error``.
- hdf5: its free-space check runs before each write; another process can fill the disk
  after the check passed. The writer here skips the check (as if that had happened).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="mounting a tmpfs needs root and unshare -m"
)

WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np, imgbench
    from imgbench.storage.hdf5 import store as h5store
    path, backend, compression, mode, skip_check = sys.argv[1:6]
    if skip_check == "1":  # another process filled the disk after the free-space check passed
        h5store.HDF5Store._reserve = lambda self, nbytes: None
    images = np.random.default_rng(0).integers(0, 256, (40, 256, 256, 3), dtype=np.uint8)  # 7.5 MiB
    if mode == "a":
        with imgbench.open(path, "w", backend=backend, compression=compression) as s:
            s.extend(images[:4])
    try:
        with imgbench.open(path, mode, backend=backend, compression=compression) as s:
            for k in range(0, 40, 4):
                s.extend(images[k : k + 4])
    except imgbench.ImgbenchError as exc:
        print(f"error: {exc}")
    """
)


def _write_on_full_disk(tmp_path, backend: str, compression: str | None, mode: str = "w", skip_check: bool = False,
                        ) -> tuple[subprocess.CompletedProcess, list[str]]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    name = {"lmdb": "s.lmdb", "hdf5": "s.h5"}[backend]
    script = (f"mount -t tmpfs -o size=4m tmpfs {mnt} && {sys.executable} -c \"$0\" {mnt / name} {backend} "
              f"{compression or 'none'} {mode} {int(skip_check)} && ls -A {mnt}")
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    out = subprocess.run(["unshare", "-m", "sh", "-c", script, WRITER], capture_output=True, text=True, timeout=120,
                         env=env)
    if out.returncode and "mount" in out.stderr and "permission" in out.stderr.lower():
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    return out, lines


def _one_clear_line(out: subprocess.CompletedProcess, lines: list[str]) -> str:
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"  # no crash at exit either
    assert out.stderr == "", out.stderr[-2000:]  # no "Exception ignored in ... __dealloc__", no warnings
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert "no space left on device" in errors[0] and "Input/output error" not in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("mode", ["w", "a"])
def test_lmdb_full_disk_says_no_space_left(tmp_path, mode):
    out, lines = _write_on_full_disk(tmp_path, "lmdb", None, mode)
    _one_clear_line(out, lines)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_hdf5_disk_filling_after_the_check_is_one_line(tmp_path, compression):
    out, lines = _write_on_full_disk(tmp_path, "hdf5", compression, skip_check=True)
    _one_clear_line(out, lines)
    assert [line for line in lines if not line.startswith("error: ")] == [], "the temporary is removed"


def test_hdf5_disk_filling_under_two_dask_workers_is_one_line(tmp_path):
    """``convert --workers 2`` of 40 noise PNGs (7.5 MiB of pixels) into sharded hdf5 on the 4 MiB tmpfs, each
    worker skipping the free-space check (a Dask preload): 22 lines of ``Exception ignored in:
    'h5py._objects.ObjectID.__dealloc__'`` came first; now the one error line alone, and nothing left."""
    pytest.importorskip("distributed")
    from PIL import Image

    src = tmp_path / "photos" / "a"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(src / f"{i}.png")
    preload = tmp_path / "skip_check.py"
    preload.write_text("from imgbench.storage.hdf5 import store\nstore.HDF5Store._reserve = lambda self, nbytes: None\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=4m tmpfs {mnt} && {sys.executable} -m imgbench.cli convert {src.parent} "
              f"{mnt / 'ds'} --backend hdf5 --compression gzip --images-per-shard 5 --workers 2 -q; "
              f"echo exit=$?; ls -A {mnt}")
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(preload)]),
           "DASK_DISTRIBUTED__SCHEDULER__DASHBOARD": "False", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert out.stdout.split() == ["exit=2"], out.stdout  # a clean error, and nothing left on the disk
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left on device" in lines[0], out.stderr[-3000:]
