"""Writers killed with SIGKILL at random points, on every backend: the old store, or nothing, or whole new data.

``test_writer_killed_at_random_points`` kills writers (``sync`` on, the default) and checks the
store after each kill: ``w`` leaves the old store or the whole new one, ``x`` nothing or the whole
new one, ``a`` every image it opened with plus whole flushed ones; the next writer of the path
removes what the dead one left. The first run of each is timed to completion; the others are
killed at random points within that time.

``test_writers_killed_while_readers_read`` adds what readers see *meanwhile*: a reader process opens the store over and over during
the kills and must only ever see a store the contract allows (``w``: the old store or the whole
new one; ``x``: nothing or the whole new one; ``a``: a count some flush committed, never going
back), every image whole and exact. Each kill is also followed by the next writer of the same
path, which must succeed (stale temporaries and locks of the dead writer do not block it).

``IMGBENCH_KILL_ITERATIONS`` (default 2) sets the kills per backend and mode (writers that outrun
their kill are retried, aiming earlier, up to 4x as many attempts); the kill time is drawn from a
seeded RNG (``IMGBENCH_KILL_SEED``, default fixed) within an undisturbed writer's run time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
import time

import numpy as np
import pytest

import imgbench

from .. import scripts
from ..conftest import store_path
from .test_processes import COMMON, SHAPE, build, check_whole_prefix, finish, image, next_json, spawn


SYNC_WRITER = textwrap.dedent(
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
    proc = scripts.start(SYNC_WRITER, path, backend, mode, start, n)
    assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    t0 = time.perf_counter()
    if delay is not None:
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert delay is not None or proc.returncode == 0, err
    return "closed" in out, time.perf_counter() - t0


@pytest.mark.slow
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
            n = check_whole_prefix(path, old, allow_more=True)
            assert n in (old, 150), f"w must leave the old store or the whole new one, found {n} images"
            assert n == 150 or not finished
        elif mode == "x":
            assert check_whole_prefix(path, 150, allow_more=False) == 150
        else:
            n = check_whole_prefix(path, old, allow_more=True)
            assert n == old + 150 or not finished
        leftovers = [p.name for p in tmp_path.iterdir() if ".imgbench-" in p.name and f"s{attempt}" in p.name]
        # A killed writer may leave its hidden temporary; the next writer of that path removes it.
        with imgbench.open(path, "w", backend=backend) as s:
            s.append(image(0), label=0)
        assert not [p for p in tmp_path.iterdir() if p.name in leftovers]
    assert killed_midway >= 2, "too few writers were killed before finishing to test anything"



ITERATIONS = int(os.environ.get("IMGBENCH_KILL_ITERATIONS", "2"))
SEED = os.environ.get("IMGBENCH_KILL_SEED", "imgbench-kill")
OLD, NEW = 8, 150

WRITER = COMMON + textwrap.dedent(
    """
    path, backend, mode, start, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    # sync=False: a kill -9 is not a power loss (the page cache survives it), and a filesystem sync
    # can take seconds on a busy machine; test_writer_killed_at_random_points kills writers with sync on
    s = imgbench.open(path, mode, backend=None if mode == "a" else backend, sync=False)
    print(json.dumps({"started": True}), flush=True)
    for i in range(start, start + n):
        s.append(image(i), label=i)
        if i % 6 == 5:
            s.flush()
            if mode == "a":
                print(json.dumps({"committed": i + 1}), flush=True)
    s.close()
    print(json.dumps({"closed": start + n}), flush=True)
    """
)

#: opens the store named in ``current`` over and over; reports every count it saw and anything wrong
WATCHER = COMMON + textwrap.dedent(
    """
    current, stop = sys.argv[1], sys.argv[2]
    print(json.dumps({"started": True}), flush=True)
    seen, bad, replaced = [], [], []

    def inode(p):
        try:
            return os.stat(p).st_ino
        except FileNotFoundError:
            return None

    while not os.path.exists(stop) and len(bad) < 5:
        with open(current) as f:
            path = f.read()
        before = inode(path)
        try:
            with imgbench.open(path) as s:
                n = len(s)
                bad += problems_in(s, n)
        except imgbench.StoreNotFoundError:
            n = None  # mode x before its publish
        except imgbench.CorruptStoreError as exc:
            # Acceptable only when a 'w' really swapped a new store in while this reader was
            # opening or reading it (readers are told, never given the new store's pixels).
            if inode(path) == before:
                bad.append(f"CorruptStoreError on a store nobody replaced: {exc}")
            replaced.append(str(exc)[:300])
            n = "replaced"
        seen.append([path, n])
    print(json.dumps({"seen": seen, "problems": bad, "replaced": replaced}), flush=True)
    """
)


def allowed_after_append(start: int) -> set[int]:
    """Counts an appender started at ``start`` can leave: the start, each flush (every 6th image), the end."""
    return {start, start + NEW} | {c for c in range(start + 1, start + NEW + 1) if c % 6 == 0}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["w", "x", "a"])
def test_writers_killed_while_readers_read(tmp_path, backend, mode):
    rng = random.Random(f"{SEED}-{backend}-{mode}")
    duration = time_a_writer(tmp_path, backend, mode)  # one undisturbed run: how long a writer takes here
    current, stop = tmp_path / "current", tmp_path / "stop"
    path = store_path(tmp_path, backend, "s0")
    if mode != "x":
        build(path, backend, OLD)
    point_at(current, path)
    watcher = spawn(WATCHER, current, stop)
    assert next_json(watcher) == {"started": True}
    allowed = {OLD} if mode == "a" else {OLD, NEW}
    kills = attempt = 0
    try:
        while kills < ITERATIONS and attempt < 4 * ITERATIONS:
            attempt += 1
            if mode == "x":
                path = store_path(tmp_path, backend, f"s{attempt}")
                point_at(current, path)
            start = len(imgbench.open(path)) if mode == "a" else 0
            if mode == "a":
                allowed |= allowed_after_append(start)
            proc = spawn(WRITER, path, backend, mode, start, NEW)
            assert next_json(proc) == {"started": True}
            time.sleep(rng.uniform(0.02, 0.8) * duration)
            proc.send_signal(signal.SIGKILL)
            out, _err = proc.communicate(timeout=60)
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            printed = max([start] + [d["committed"] for d in lines if "committed" in d])
            finished = any("closed" in d for d in lines)
            kills += not finished
            if finished:  # the writer outran the kill (a busy machine varies): aim earlier next time
                duration *= 0.6
            if mode == "a":
                n = check_whole(path)
                assert n >= printed, f"images the appender had committed were lost: {n} < {printed}"
                assert n in allowed_after_append(start), f"{n} images is no count a flush committed"
            elif mode == "w":
                assert check_whole(path) in (OLD, NEW)
            elif os.path.lexists(path):
                assert check_whole(path) == NEW
            # The next writer of this path is not blocked by what the dead one left behind.
            if mode == "a":
                with imgbench.open(path, "a") as s:
                    m = len(s)
                    s.append(image(m), label=m)
                allowed.add(m + 1)
            elif mode == "w" or not os.path.lexists(path):
                with imgbench.open(path, mode, backend=backend) as s:
                    s.extend(np.stack([image(i) for i in range(OLD)]), labels=np.arange(OLD))
    finally:
        stop.write_text("stop")
    report = finish(watcher)
    assert report["problems"] == [], report["problems"]
    unclear = [m for m in report["replaced"] if "replaced" not in m]
    if unclear:  # the outcome is right (an error, not the new store's pixels); the wording is not
        print(f"{backend}-{mode}: a reader racing a replacement was told the store is damaged: {unclear[:2]}")
    counts = [n for _p, n in report["seen"] if isinstance(n, int)]
    assert counts, "the reader never got to read a store"
    assert set(counts) <= allowed, f"readers saw counts {sorted(set(counts) - allowed)} no writer committed"
    if mode == "a":
        assert counts == sorted(counts), f"a reader saw the count go back: {counts}"
    assert kills >= 1 or ITERATIONS == 0, "no writer was killed before it finished: nothing was tested"


def point_at(current, path) -> None:
    tmp = current.with_suffix(".tmp")
    tmp.write_text(str(path))
    os.replace(tmp, current)


def check_whole(path) -> int:
    with imgbench.open(path) as s:
        n = len(s)
        every = s.read_many() if n else []
        for i in range(n):
            assert np.array_equal(every[i], image(i)), f"image {i} is not whole"
        if n:
            assert s.labels.tolist() == list(range(n))
    return n


def time_a_writer(tmp_path, backend: str, mode: str) -> float:
    probe = store_path(tmp_path, backend, "timing")
    if mode != "x":
        build(probe, backend, OLD)
    proc = spawn(WRITER, probe, backend, mode, OLD if mode == "a" else 0, NEW)
    assert next_json(proc) == {"started": True}
    t0 = time.perf_counter()
    finish(proc)
    return max(0.05, time.perf_counter() - t0)
