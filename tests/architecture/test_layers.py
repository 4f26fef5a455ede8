"""The package's shape is checked, not hoped for: layers import only downward, no cycles, and the
public names that code outside this repository imports stay where they were."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "0 broken" in out and "2 kept" in out, out[-4000:]


def _lint_copy_with(tmp_path: Path, module: str, extra_import: str) -> subprocess.CompletedProcess:
    """Run the linter on a copy of the package where ``module`` (a path under imgbench/) gains one import."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    shutil.copytree(ROOT / "imgbench", tmp_path / "imgbench", ignore=shutil.ignore_patterns("_vendor", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "imgbench" / module
    target.write_text(target.read_text() + f"\n{extra_import}  # noqa: E402\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)


def test_a_cycle_breaks_the_contract(tmp_path):
    """The acyclic contract really fails on a cycle: core.errors importing core.atomic, which imports errors."""
    proc = _lint_copy_with(tmp_path, "core/errors.py", "from imgbench.core import atomic")
    assert proc.returncode != 0 and "cycles" in proc.stdout.lower(), proc.stdout[-4000:]


def test_a_layer_importing_upward_breaks_the_contract(tmp_path):
    proc = _lint_copy_with(tmp_path, "core/usage.py", "from imgbench.storage import registry")
    assert proc.returncode != 0 and "imgbench.core.usage -> imgbench.storage.registry" in proc.stdout, proc.stdout[-4000:]


#: public module -> the module that holds its code (the same object: patches and isinstance agree)
ALIASES = {
    "imgbench.torch": "imgbench.adapters.torch",
    "imgbench.cluster": "imgbench.adapters.cluster",
    "imgbench.convert": "imgbench.adapters.convert",
    "imgbench.datasets": "imgbench.adapters.datasets",
    "imgbench.parallel_read": "imgbench.measure.parallel_read",
    "imgbench.errors": "imgbench.core.errors",
}


@pytest.mark.parametrize("public", sorted(ALIASES))
def test_public_modules_are_the_moved_modules(public):
    assert importlib.import_module(public) is importlib.import_module(ALIASES[public])


def test_public_names_are_where_outside_code_finds_them():
    import imgbench
    import imgbench.cluster
    import imgbench.parallel_read
    import imgbench.remote
    import imgbench.sharded
    import imgbench.store
    import imgbench.torch

    for name in ("open", "backends", "disk_usage", "Store", "ImgbenchError", "InvalidImageError",
                 "UnsupportedError", "StoreExistsError", "StoreNotFoundError", "CorruptStoreError",
                 "FormatVersionError", "StoreLockedError", "RemoteAccessError", "__version__"):
        assert hasattr(imgbench, name), name
    assert imgbench.datasets.photos(2).shape[0] == 2  # `import imgbench` alone gives imgbench.datasets
    assert imgbench.store.Store is imgbench.Store and imgbench.store.open is imgbench.open
    assert callable(imgbench.cluster.run) and callable(imgbench.parallel_read.run)
    assert imgbench.torch.StoreDataset.__name__ == "StoreDataset"
    for name in ("ShardedStore", "RemoteShardedStore", "open_dataset", "plan", "write_shard", "finish", "MANIFEST"):
        assert hasattr(imgbench.sharded, name), name
    assert imgbench.remote.RemoteAccessError is imgbench.RemoteAccessError


def test_import_imgbench_loads_no_backend_engine():
    """Backends are import strings resolved on first use: `import imgbench` pulls in neither h5py, lmdb nor zarr."""
    code = "import sys, imgbench; print(sorted(m for m in ('h5py', 'lmdb', 'zarr', 'torch', 'dask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_names_import_imgbench_alone_gave_before_the_layers():
    """Before the layered package, ``import imgbench`` bound ``imgbench.errors``, ``imgbench.store`` and
    ``imgbench.measure.disk_usage`` as a side effect; code outside this repository may rely on it."""
    code = ("import imgbench; from imgbench.measure import disk_usage; "
            "assert imgbench.errors.CorruptStoreError is imgbench.CorruptStoreError; "
            "assert imgbench.store.Store is imgbench.Store; assert disk_usage is imgbench.disk_usage; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_every_backend_works_locally_without_the_s3_extra():
    """`pip install .` has no fsspec (it comes with the s3 extra): hdf5 imported it at import time, so
    every local hdf5 store failed with ModuleNotFoundError on such a machine (found by the asv env)."""
    code = ("import sys; sys.modules['fsspec'] = None; sys.modules['s3fs'] = None\n"
            "import os, tempfile, numpy as np, imgbench\nd = tempfile.mkdtemp()\n"
            "for b in imgbench.backends():\n"
            "    with imgbench.open(os.path.join(d, b), 'w', backend=b) as s: s.extend(np.zeros((2, 4, 4, 3), np.uint8))\n"
            "    with imgbench.open(os.path.join(d, b)) as s: assert len(s) == 2, b\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
