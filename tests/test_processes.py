"""Real processes: fork and spawn readers, concurrent readers, writers killed with SIGKILL."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import imgbench

from .conftest import BACKENDS, forked_results, same, store_path

SHAPE = (24, 20, 3)


def image(i: int) -> np.ndarray:
    """Deterministic image i, so any process can check what it reads."""
    return np.random.default_rng(i).integers(0, 256, SHAPE, dtype=np.uint8)


def build(path, backend, n, start=0):
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.stack([image(start + i) for i in range(n)]), labels=np.arange(start, start + n))


def check_whole(path, expected_prefix: int, allow_more: bool) -> int:
    """Open the store; every image must be exactly image(i) with label i. Returns the count."""
    with imgbench.open(path) as s:
        n = len(s)
        assert n >= expected_prefix if allow_more else n == expected_prefix
        everything = s.read_many() if n else []
        for i in range(n):
            assert same(everything[i], image(i)), f"image {i} damaged"
        if n:
            assert s.labels.tolist() == list(range(n))
    return n


def _read_all_digest(store) -> list:
    return [int(store[i].astype(np.int64).sum()) for i in range(len(store))]


def _child_read(store, queue):
    queue.put(_read_all_digest(store))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reader_survives_fork(tmp_path, backend):
    path = store_path(tmp_path, backend)
    build(path, backend, 30)
    with imgbench.open(path) as s:
        expected = _read_all_digest(s)  # handles are open in the parent
        results = forked_results(_child_read, s)
        assert results == [expected, expected]
        # The parent's handles still work after its children used and dropped theirs.
        assert _read_all_digest(s) == expected
        assert same(s.read_many([3, 1])[0], image(3))


def _spawn_read(blob):
    store = pickle.loads(blob)
    return _read_all_digest(store), store.labels.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_reader_pickles_to_spawned_workers(tmp_path, backend):
    path = store_path(tmp_path, backend)
    build(path, backend, 12)
    with imgbench.open(path) as s:
        expected = _read_all_digest(s)
        blob = pickle.dumps(s)
        assert len(blob) < 2000, "pickles carry the path and options, not the pixels"
        clone = pickle.loads(blob)
        assert len(clone) == 12 and clone.backend == backend
        with mp.get_context("spawn").Pool(2) as pool:
            results = pool.map(_spawn_read, [blob, blob])
    assert results == [(expected, list(range(12)))] * 2


WRITER = textwrap.dedent(
    """
    import sys, numpy as np, imgbench
    path, backend, mode, start, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)
    s = imgbench.open(path, mode, backend=backend if mode != "a" else None)
    print("started", flush=True)
    for i in range(start, start + n):
        s.append(image(i), label=i)
        if i % 5 == 4:
            s.flush()  # in 'w'/'x' this fills the hidden temporary, in 'a' it commits
    s.close()
    print("closed", flush=True)
    """
).format(shape=SHAPE)


def run_and_kill(path, backend, mode, start, n, delay):
    """Run a writer; SIGKILL it ``delay`` s after it starts writing (None: let it finish)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), backend, mode, str(start), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    t0 = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert delay is not None or proc.returncode == 0, err
    return "closed" in out, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["w", "x", "a"])
def test_writer_killed_at_random_points(tmp_path, backend, mode):
    """The first run is timed to completion; the others are killed at random points within that time."""
    rng = random.Random(f"{backend}-{mode}")
    duration = None
    killed_midway = 0
    for attempt in range(int(os.environ.get("IMGBENCH_KILL_ITERATIONS", 14))):
        if attempt >= 6 and killed_midway >= 3:
            break
        path = store_path(tmp_path, backend, f"s{attempt}")
        old = 0
        if mode in ("w", "a"):
            old = 10
            build(path, backend, old)
        delay = None if duration is None else rng.uniform(0.0, 0.8 * duration)
        finished, elapsed = run_and_kill(path, backend, mode, old if mode == "a" else 0, 150, delay)
        if finished:  # the writer outran the kill (a busy machine varies): aim earlier
            duration = elapsed if duration is None else min(duration, elapsed) * 0.7
        killed_midway += not finished
        if mode == "x" and not os.path.lexists(path):
            assert not finished
        elif mode == "w":
            n = check_whole(path, old, allow_more=True)
            assert n in (old, 150), f"w must leave the old store or the whole new one, found {n} images"
            assert n == 150 or not finished
        elif mode == "x":
            assert check_whole(path, 150, allow_more=False) == 150
        else:
            n = check_whole(path, old, allow_more=True)
            assert n == old + 150 or not finished
        leftovers = [p.name for p in tmp_path.iterdir() if ".imgbench-" in p.name and f"s{attempt}" in p.name]
        # A killed writer may leave its hidden temporary; the next writer of that path removes it.
        with imgbench.open(path, "w", backend=backend) as s:
            s.append(image(0), label=0)
        assert not [p for p in tmp_path.iterdir() if p.name in leftovers]
    assert killed_midway >= 2, "too few writers were killed before finishing to test anything"


APPENDER = textwrap.dedent(
    """
    import sys, numpy as np, imgbench
    path, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)
    with imgbench.open(path, "a") as s:
        print("started", flush=True)
        for i in range(start, start + n):
            s.append(image(i), label=i)
            if i % 3 == 0:
                s.flush()
    print("closed", flush=True)
    """
).format(shape=SHAPE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_readers_in_other_processes_see_whole_images_during_append(tmp_path, backend):
    path = store_path(tmp_path, backend)
    build(path, backend, 5)
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path), "5", "60"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    seen = set()
    while proc.poll() is None:
        seen.add(check_whole(path, 5, allow_more=True))
    assert proc.wait(timeout=60) == 0
    assert check_whole(path, 65, allow_more=False) == 65
    assert min(seen) >= 5


def test_truncated_lmdb_is_refused_before_it_can_sigbus(tmp_path):
    path = tmp_path / "t.lmdb"
    build(path, "lmdb", 200)
    data = path / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    code = textwrap.dedent(
        f"""
        import imgbench
        try:
            with imgbench.open({str(path)!r}) as s:
                s.read_many()
        except imgbench.CorruptStoreError as exc:
            print("refused:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"reader died (signal {-result.returncode}): {result.stderr}"
    assert "refused:" in result.stdout and "truncated" in result.stdout
