"""A full disk (here: the file-size limit, RLIMIT_FSIZE) is a clean error and loses nothing, on every backend.

``test_file_size_limit`` checks every backend and mode with one big write: the store that was
there is intact, ``x`` leaves nothing. Writers that write several files concurrently (disk: a
thread pool writes image files; zarr: its event loop writes shards concurrently) fail in one
thread while the others are still writing; the writer's clean-up then races with them.
``test_no_temporaries_after_a_full_disk_with_concurrent_writes`` checks, in a subprocess with
RLIMIT_FSIZE, that after the clean error nothing of the failed writer is left (also a moment
later, once stray writes have landed), with options that make each write many files.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import imgbench

from .. import scripts
from ..conftest import snapshot, store_path
from .backends import BACKENDS, kit_for

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
@pytest.mark.parametrize("mode", ["w", "x", "a"])
def test_file_size_limit(tmp_path, backend, mode):
    path = store_path(tmp_path, backend)
    before = None
    if mode in ("w", "a"):
        with imgbench.open(path, "w", backend=backend, compression="none") as s:
            s.extend(np.ones((3, 16, 16, 3), np.uint8), labels=[0, 1, 2])
        before = snapshot(path)
    result = scripts.run(WRITER, path, backend, mode, timeout=120)
    assert result.returncode == 3, f"expected a clean error, got {result.returncode}: {result.stdout}{result.stderr}"
    assert "clean error" in result.stdout and "Traceback" not in result.stderr
    if mode == "x":
        assert not path.exists(), "no partial store"
    else:
        assert snapshot(path) == before, "the store that was there is intact"
    leftovers = [p.name for p in tmp_path.iterdir() if ".imgbench-" in p.name]
    assert leftovers == [], "temporaries are removed after the failure"


CONCURRENT_WRITER = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    from pathlib import Path
    import numpy as np
    import imgbench
    base, backend, attempts = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    options = json.loads(sys.argv[4])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    errors = []
    for k in range(attempts):
        d = base / f"attempt{k}"
        d.mkdir()
        if backend == "zarr":  # shards of 2 images (1.9 MB), written concurrently
            images = np.zeros((24, 560, 560, 3), np.uint8)
        else:  # one file too big (1.5 MB) among many that fit (0.9 MB)
            images = [np.zeros((700, 700, 3), np.uint8)] + [np.zeros((560, 560, 3), np.uint8)] * 40
        try:
            with imgbench.open(d / "s", "x", backend=backend, compression="none", **options) as s:
                s.extend(images)
            errors.append("no error")
        except (imgbench.ImgbenchError, OSError) as exc:
            errors.append(type(exc).__name__)
    time.sleep(1.0)  # stray writes of a failed writer land within this
    left = {k: sorted(str(p.relative_to(base / f"attempt{k}")) for p in (base / f"attempt{k}").rglob("*"))[:5]
            for k in range(attempts)}
    print(json.dumps({"errors": errors, "left": {k: v for k, v in left.items() if v}}))
    """
)

# Backends whose failed writer still leaves files behind (strict xfail). None now: zarr's left-over
# writes on its event loop are drained before the temporary is removed (issue 14, ZarrStore._close_writer).
RACES: dict[str, str] = {}


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=pytest.mark.xfail(strict=True, reason=f"BUG {RACES[b]}. Fix: wait for every "
                 "submitted write before propagating the first error (concurrent.futures.wait in map_chunks; "
                 "for zarr, drain its pending writes or retry the removal until the path stays gone)"))
    if b in RACES else b
    for b in BACKENDS
])
def test_no_temporaries_after_a_full_disk_with_concurrent_writes(tmp_path, backend):
    options = kit_for(backend).many_files_options
    res = scripts.run(CONCURRENT_WRITER, tmp_path, backend, 8, json.dumps(options), timeout=300)
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(report["errors"]) <= {"ImgbenchError", "OSError"}, report["errors"]
    assert report["left"] == {}, f"the failed writer left files behind: {report['left']}"
