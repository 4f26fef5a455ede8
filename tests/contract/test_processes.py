"""Concurrency across real processes, on every backend: fork and spawn readers, readers during an
append, a second appender.

- readers survive ``fork`` and pickle to ``spawn`` workers, reopening their handles lazily;
- readers opened *before* an append keep reading exactly the images they opened with while another
  process appends (for hdf5, whose appends are copy-on-write, the reader keeps the old file open:
  the path's inode changes under it and it does not notice);
- readers that open the store again and again during the append always see a count the appender
  committed (never less than before, never a partial image) with every image whole (other processes
  with an appender that does not sync; this process with one that syncs every flush, the default);
- a second appender in another process gets ``StoreLockedError`` and changes nothing, while the
  first holds the store; the lock dies with its holder (kill -9), so the next appender proceeds.

Every reader and writer here is its own interpreter (or a forked/spawned child). The same rules in
one process: ``test_modes.py``; writers killed at random points: ``test_crashes.py``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import signal
import textwrap
import time

import numpy as np
import pytest

import imgbench

from .. import scripts
from ..conftest import forked_results, same, store_path

SHAPE = (24, 20, 3)


def image(i: int) -> np.ndarray:
    """Deterministic image i: any process can check what it reads."""
    return np.random.default_rng(i).integers(0, 256, SHAPE, dtype=np.uint8)


def build(path, backend: str, n: int, start: int = 0) -> None:
    with imgbench.open(path, "w", backend=backend) as s:
        s.extend(np.stack([image(start + i) for i in range(n)]), labels=np.arange(start, start + n))


def _read_all_digest(store) -> list:
    return [int(store[i].astype(np.int64).sum()) for i in range(len(store))]


def _child_read(store, queue):
    queue.put(_read_all_digest(store))


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


COMMON = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import imgbench

    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)

    def problems_in(s, n):
        '''What is wrong with the first n images and labels of an open store (empty: nothing).'''
        out = []
        every = s.read_many() if n else []
        for i in range(n):
            if not (every[i].dtype == np.uint8 and np.array_equal(every[i], image(i))):
                out.append(f"image {{i}} is not whole/exact")
        if n:
            labels = s.labels.tolist()
            if labels[:n] != list(range(n)):
                out.append("labels differ")
        return out
    """
).format(shape=SHAPE)

#: opens once, then reads through that one handle until told to stop
EARLY_READER = COMMON + textwrap.dedent(
    """
    path, stop = sys.argv[1], sys.argv[2]
    s = imgbench.open(path)
    n = len(s)
    inode = os.stat(path).st_ino
    print(json.dumps({"opened": n, "inode": inode}), flush=True)
    reads, bad = 0, []
    while not os.path.exists(stop) and not bad:
        if len(s) != n:
            bad.append(f"count changed from {n} to {len(s)} on an open reader")
        bad += problems_in(s, n)
        bad += [] if np.array_equal(s[n - 1], image(n - 1)) else [f"s[{n - 1}] differs"]
        reads += 1
    s.close()
    print(json.dumps({"reads": reads, "problems": bad[:5], "inode_at_end": os.stat(path).st_ino}), flush=True)
    """
)

#: opens the store again and again until told to stop; counts must never go back
FRESH_READER = COMMON + textwrap.dedent(
    """
    path, stop, low = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps({"started": True}), flush=True)
    seen, bad, last = [], [], low
    while not bad:
        done = os.path.exists(stop)
        with imgbench.open(path) as s:
            n = len(s)
            if n < last:
                bad.append(f"count went back from {last} to {n}")
            last = n
            seen.append(n)
            bad += problems_in(s, n)
        if done:
            break
    print(json.dumps({"seen": sorted(set(seen)), "opens": len(seen), "problems": bad[:5]}), flush=True)
    """
)

APPENDER = COMMON + textwrap.dedent(
    """
    path, start, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # sync=False: visibility, not durability, is under test here, and a flush's filesystem sync
    # can take seconds on a machine busy writing elsewhere
    with imgbench.open(path, "a", sync=False) as s:
        print(json.dumps({"appending": True}), flush=True)
        for i in range(start, start + n):
            s.append(image(i), label=i)
            if (i - start) % every == every - 1:
                s.flush()
                print(json.dumps({"committed": i + 1}), flush=True)
    print(json.dumps({"closed": start + n}), flush=True)
    """
)


def spawn(code: str, *args):
    """``python -c code args`` in a process of its own (tests/scripts.py), stdin/stdout/stderr piped."""
    return scripts.start(code, *args)


def next_json(proc) -> dict:
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=60)
        raise AssertionError(f"process exited ({proc.returncode}) without answering: {proc.stderr.read()[-2000:]}")
    return json.loads(line)


def finish(proc, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode} ({signal.Signals(-proc.returncode).name if proc.returncode < 0 else ''}): {err[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


def test_readers_in_other_processes_during_an_append(tmp_path, backend):
    path = store_path(tmp_path, backend)
    old = 10
    build(path, backend, old)
    stop = tmp_path / "stop"
    early = spawn(EARLY_READER, path, stop)
    opened = next_json(early)
    assert opened["opened"] == old
    fresh = [spawn(FRESH_READER, path, stop, old) for _ in range(2)]
    for r in fresh:
        assert next_json(r) == {"started": True}
    appender = spawn(APPENDER, path, old, 60, 4)
    try:
        assert next_json(appender) == {"appending": True}
        committed = [next_json(appender)["committed"] for _ in range(15)]
        final = finish(appender)
    finally:
        stop.write_text("stop")
    assert committed == list(range(old + 4, old + 61, 4)) and final == {"closed": old + 60}

    early_report = finish(early)
    assert early_report["problems"] == [], early_report
    assert early_report["reads"] >= 1
    for r in fresh:
        report = finish(r)
        assert report["problems"] == [], report
        assert report["seen"][-1] == old + 60, "the last open after the append sees every image"
        allowed = {old, *committed, old + 60}
        assert set(report["seen"]) <= allowed, f"saw counts {report['seen']}, committed were {sorted(allowed)}"
    if backend == "hdf5":
        # Copy-on-write: the appender swapped a new file in; the early reader kept the old one.
        assert early_report["inode_at_end"] != opened["inode"], "hdf5 appends replace the file"
    with imgbench.open(path) as s:
        assert len(s) == old + 60
        assert np.array_equal(s.read_many(), np.stack([image(i) for i in range(old + 60)]))


def check_whole_prefix(path, expected_prefix: int, allow_more: bool) -> int:
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


SYNC_APPENDER = textwrap.dedent(
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


def test_readers_in_other_processes_see_whole_images_during_append(tmp_path, backend):
    """This process reads again and again while another appends with sync on (the default) and flushes often."""
    path = store_path(tmp_path, backend)
    build(path, backend, 5)
    proc = spawn(SYNC_APPENDER, path, 5, 60)
    assert proc.stdout.readline().strip() == "started"
    seen = set()
    while proc.poll() is None:
        seen.add(check_whole_prefix(path, 5, allow_more=True))
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert check_whole_prefix(path, 65, allow_more=False) == 65
    assert min(seen) >= 5


HOLDER = COMMON + textwrap.dedent(
    """
    path = sys.argv[1]
    s = imgbench.open(path, "a", sync=False)
    s.append(image(5), label=5)
    s.flush()  # committed: readers see 6 images from here on
    s.append(image(6), label=6)  # pending, not flushed
    print(json.dumps({"holding": len(s)}), flush=True)
    if sys.stdin.readline().strip() == "close":
        s.close()
        print(json.dumps({"closed": True}), flush=True)
    """
)

SECOND = COMMON + textwrap.dedent(
    """
    path = sys.argv[1]
    try:
        with imgbench.open(path, "a") as s:
            s.append(image(99), label=99)
        print(json.dumps({"outcome": "appended"}))
    except imgbench.StoreLockedError as exc:
        print(json.dumps({"outcome": "locked", "message": str(exc)}))
    except Exception as exc:
        print(json.dumps({"outcome": type(exc).__name__, "message": str(exc)}))
    """
)


def state(path) -> tuple[int, list]:
    with imgbench.open(path) as s:
        return len(s), s.labels.tolist()


def test_second_appender_in_another_process_is_locked_out(tmp_path, backend):
    path = store_path(tmp_path, backend)
    build(path, backend, 5)
    holder = spawn(HOLDER, path)
    try:
        assert next_json(holder) == {"holding": 7}
        before = state(path)
        assert before == (6, list(range(6)))
        second = finish(spawn(SECOND, path))
        assert second["outcome"] == "locked" and "another process" in second["message"], second
        with pytest.raises(imgbench.StoreLockedError):
            imgbench.open(path, "a")
        assert state(path) == before, "the refused appenders changed nothing"
        holder.stdin.write("close\n")
        holder.stdin.flush()
        assert finish(holder) == {"closed": True}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert state(path) == (7, list(range(7)))
    assert finish(spawn(SECOND, path))["outcome"] == "appended", "the lock is released on close"
    assert state(path) == (8, list(range(7)) + [99])


def test_lock_of_an_appender_killed_with_sigkill_is_released(tmp_path, backend):
    path = store_path(tmp_path, backend)
    build(path, backend, 5)
    holder = spawn(HOLDER, path)
    assert next_json(holder) == {"holding": 7}
    assert finish(spawn(SECOND, path))["outcome"] == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert state(path) == (6, list(range(6))), "what was flushed survives, the pending image does not"
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the dead holder's lock at once; allow a slow machine a moment
        outcome = finish(spawn(SECOND, path))["outcome"]
        if outcome != "locked" or time.monotonic() > deadline:
            break
    assert outcome == "appended"
    assert state(path) == (7, list(range(6)) + [99])
    leftovers = [p.name for p in tmp_path.iterdir() if ".imgbench-" in p.name]
    assert leftovers == [], f"the next appender removed the dead one's temporaries: {leftovers}"
