"""A full disk (here: the file-size limit, RLIMIT_FSIZE) is a clean error and loses nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import imgbench

from .conftest import BACKENDS, snapshot, store_path

WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np, imgbench
    path, backend, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    # Without this the kernel kills the process with SIGXFSZ instead of failing the write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    big = np.random.default_rng(0).integers(0, 256, (3, 700, 700, 3), dtype=np.uint8)  # 1.5 MB each
    try:
        with imgbench.open(path, mode, backend=backend if mode != "a" else None, compression="none") as s:
            s.extend(big, labels=np.zeros(3, int))
    except (imgbench.ImgbenchError, OSError) as exc:
        print("clean error:", type(exc).__name__, str(exc).splitlines()[0])
        sys.exit(3)
    print("no error")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["w", "x", "a"])
def test_file_size_limit(tmp_path, backend, mode):
    path = store_path(tmp_path, backend)
    before = None
    if mode in ("w", "a"):
        with imgbench.open(path, "w", backend=backend, compression="none") as s:
            s.extend(np.ones((3, 16, 16, 3), np.uint8), labels=[0, 1, 2])
        before = snapshot(path)
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), backend, mode], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, f"expected a clean error, got {result.returncode}: {result.stdout}{result.stderr}"
    assert "clean error" in result.stdout and "Traceback" not in result.stderr
    if mode == "x":
        assert not path.exists(), "no partial store"
    else:
        assert snapshot(path) == before, "the store that was there is intact"
    leftovers = [p.name for p in tmp_path.iterdir() if ".imgbench-" in p.name]
    assert leftovers == [], "temporaries are removed after the failure"
