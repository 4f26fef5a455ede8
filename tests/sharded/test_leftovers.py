"""A killed sharded append leaks nothing (issue 20): shards it sealed but never committed, and the
temporary of the shard it was writing, are listed apart by ``imgbench info`` (never counted in the
dataset's size) and removed by the next appender. The appender is a real process, killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import textwrap

import numpy as np
import pytest

import imgbench
from imgbench.adapters.integrity import describe, format_info
from imgbench.core.usage import disk_usage

from .. import scripts

KILLED_APPENDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import imgbench
    s = imgbench.open(sys.argv[1], "a")
    s.extend(np.full((16, 8, 8), 7, np.uint8))  # eight full shards, sealed, not in the manifest
    s.extend(np.full((1, 8, 8), 7, np.uint8))  # a ninth, still a temporary
    print("sealed", flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("backend", ["lmdb", "zarr", "npy"])
def test_killed_append_leaves_nothing_counted_and_the_next_appender_removes_it(tmp_path, backend):
    path = tmp_path / "ds"
    with imgbench.open(path, "w", backend=backend, images_per_shard=2) as s:
        s.extend(np.arange(4 * 64, dtype=np.uint8).reshape(4, 8, 8))
    committed = sorted(os.listdir(path))
    proc = scripts.start(KILLED_APPENDER, path)
    try:
        assert proc.stdout.readline().strip() == "sealed", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    left = sorted(set(os.listdir(path)) - set(committed))
    assert len([n for n in left if n.startswith("shard-")]) == 8 and any(".imgbench-tmp-" in n for n in left), left

    info = describe(path)
    assert info["images"] == 4 and info["shards"] == 2
    assert sorted(info["leftovers"]["names"]) == left
    dataset = [disk_usage(path / name) for name in committed]
    assert info["disk"]["apparent"] == sum(d["apparent"] for d in dataset), "leftovers counted in the size"
    assert info["disk"]["files"] == sum(d["files"] for d in dataset)
    line = next(line for line in format_info(info) if line.startswith("leftovers"))
    assert "9 entries" in line and "not counted" in line and "next append removes them" in line

    with imgbench.open(path, "a") as s:
        s.append(np.full((8, 8), 9, np.uint8))
    assert sorted(os.listdir(path)) == sorted([*committed, "shard-00002" + {"lmdb": ".lmdb", "zarr": ".zarr"}.get(
        backend, "")]), "the next appender removed what the killed one left"
    assert "leftovers" not in describe(path)
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 5 and s.shards == 3
        assert np.array_equal(s.read_many()[:4], np.arange(4 * 64, dtype=np.uint8).reshape(4, 8, 8))
        assert (s[4] == 9).all()


def test_files_imgbench_never_names_are_left_alone(tmp_path):
    """Only imgbench's own shard names and temporaries are leftovers; a user's notes in the directory stay."""
    path = tmp_path / "ds"
    with imgbench.open(path, "w", backend="npy", images_per_shard=2) as s:
        s.extend(np.zeros((3, 4, 4), np.uint8))
    (path / "README.txt").write_text("mine")
    (path / "shard-notes").mkdir()
    assert "leftovers" not in describe(path)
    with imgbench.open(path, "a") as s:
        s.append(np.zeros((4, 4), np.uint8))
    assert (path / "README.txt").read_text() == "mine" and (path / "shard-notes").is_dir()
