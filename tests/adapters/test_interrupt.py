"""Ctrl-C during ``imgbench convert`` leaves no temporary behind, on every backend and sharded (issue 14).

Each try runs ``imgbench convert`` of a folder of small PNGs in its own process, waits until
the writer's hidden temporary exists, sleeps a seeded random delay and sends SIGINT. The
conversion then either was interrupted (status 130, the one line "imgbench: interrupted", no
traceback) or had already finished (status 0 and a store); either way nothing named
``.<dst>.imgbench-*`` is left beside the destination.

The bug this pins: the disk backend encodes PNGs on a thread pool while the main thread waits;
Ctrl-C interrupted the wait, the writer removed its temporary while pool threads were still
writing files into it, and the rmtree lost the race (7 of 8 tries left the folder).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgbench

IMAGES = 400
TRIES = 5
REPO = Path(__file__).resolve().parents[2]
# The console script's entry (imgbench.cli.run); a hang dumps every thread's stack and exits.
CLI = ("import faulthandler, sys; faulthandler.dump_traceback_later(40, exit=True); "
       "from imgbench.cli import run; sys.argv[0] = 'imgbench'; run()")
CASES = [(name, ()) for name in imgbench.backends()] + [
    ("disk", ("--images-per-shard", "60")),
    ("zarr", ("--images-per-shard", "60")),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(14)
    for k in range(IMAGES):
        folder = root / f"class{k % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{k:04d}.png")
    return root


def _leftovers(dst: Path) -> list[str]:
    return sorted(p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.imgbench-"))


def _whole(dst: Path) -> bool:
    with imgbench.open(dst) as store:
        return len(store) == IMAGES


def _interrupt_once(src: Path, dst: Path, backend: str, extra: tuple[str, ...],
                    delay: float | None) -> tuple[int, str, str, float]:
    """Convert, and send SIGINT ``delay`` s after the temporary appeared (None: no signal).

    Returns the status, stdout, stderr and (no signal) how long the temporary existed."""
    # A fresh interpreter, as a person runs it (the forked scripts of tests/scripts.py exit through
    # multiprocessing, whose own clean-up a late SIGINT interrupts); this checkout's imgbench.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "convert", str(src), str(dst), "--backend", backend, "-q",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while proc.poll() is None and not _leftovers(dst) and time.monotonic() < deadline:
        time.sleep(0.001)
    started = time.monotonic()
    if delay is None:
        while proc.poll() is None and _leftovers(dst):
            time.sleep(0.0005)
    else:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
    took = time.monotonic() - started
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, took


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "extra"), CASES, ids=[f"{b}{'-sharded' if e else ''}" for b, e in CASES])
def test_ctrl_c_during_convert_leaves_no_temporary(tmp_path, source, backend, extra):
    # How long this conversion keeps its temporary here; the signals land at random points of that time.
    rc, out, err, took = _interrupt_once(source, tmp_path / "whole", backend, extra, None)
    assert rc == 0 and _leftovers(tmp_path / "whole") == [], err
    rng = random.Random(f"issue-14-{backend}-{bool(extra)}")
    interrupted = 0
    for k in range(TRIES):
        dst = tmp_path / f"out{k}"
        delay = 0.0 if k == 0 else rng.uniform(0.0, 1.0) * took  # the first as soon as the temporary exists
        rc, out, err, _ = _interrupt_once(source, dst, backend, extra, delay)
        assert _leftovers(dst) == [], f"delay {delay:.3f}s: rc {rc}, stderr {err!r}"
        if "wrote" in out:
            # Finished before the signal; a signal as Python exits kills it (-SIGINT), after the store was whole.
            assert rc in (0, -signal.SIGINT) and _whole(dst), f"delay {delay:.3f}s: rc {rc}, stderr {err!r}"
            continue
        assert rc == 130, f"delay {delay:.3f}s: rc {rc}, stderr {err!r}"
        assert err == "imgbench: interrupted\n", f"delay {delay:.3f}s: {err!r}"
        # Interrupted before the publishing rename (no store) or after it (the whole store).
        assert not dst.exists() or _whole(dst), f"delay {delay:.3f}s: a partial store at {dst}"
        interrupted += not dst.exists()
    assert interrupted, f"no try was interrupted (the temporary lives {took:.3f}s here): the test tested nothing"
