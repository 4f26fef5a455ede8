"""Replacing a store that another process is writing, on every backend, plain and sharded (issue 20).

- mode ``w`` (and ``imgbench convert --overwrite``, plain or sharded) takes the writer lock of the
  store it replaces: while an appender in another process holds it, ``w`` gets ``StoreLockedError``
  naming the holder's pid and host in one line, and the appender finishes with exactly its images;
  once the appender has closed, ``w`` replaces the store as before; while a ``w`` replaces the store,
  an appender or a second ``w`` is refused likewise;
- an appender whose store was replaced under it by a program that takes no lock never commits
  into the store now at the path (``StoreReplacedError``); that store is left as it was.

Each writer is a process of its own (tests/scripts.py). The lock between appenders:
``test_processes.py``.
"""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

import imgbench

from ..conftest import store_path
from .test_processes import finish, next_json, spawn

SHAPE = (12, 10, 3)
OLD, FIRST, SECOND, NEW = 20, 10, 10, 16


def image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, SHAPE, dtype=np.uint8)


@pytest.fixture(params=["plain", "sharded"])
def layout(request) -> str:
    return request.param


def shard_options(layout: str) -> dict:
    return {"images_per_shard": 7} if layout == "sharded" else {}


def build(path, backend: str, layout: str, start: int, n: int) -> None:
    with imgbench.open(path, "w", backend=backend, **shard_options(layout)) as s:
        s.extend(np.stack([image(i) for i in range(start, start + n)]), labels=np.arange(start, start + n))


def holds_exactly(path, start: int, n: int) -> None:
    """The store at ``path`` holds images ``start .. start+n-1`` with those labels, checksums verified."""
    with imgbench.open(path, verify=True) as s:
        assert len(s) == n
        assert s.labels.tolist() == list(range(start, start + n))
        assert np.array_equal(s.read_many(), np.stack([image(i) for i in range(start, start + n)]))


APPENDER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import imgbench

    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)

    path, start, first, second = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    s = imgbench.open(path, "a")
    for i in range(start, start + first):
        s.append(image(i), label=i)
    s.flush()
    for i in range(start + first, start + first + second // 2):
        s.append(image(i), label=i)  # pending
    print(json.dumps({{"holding": len(s)}}), flush=True)
    sys.stdin.readline()
    try:
        for i in range(start + first + second // 2, start + first + second):
            s.append(image(i), label=i)
        s.close()
        print(json.dumps({{"outcome": "closed"}}), flush=True)
    except imgbench.ImgbenchError as exc:
        print(json.dumps({{"outcome": type(exc).__name__, "message": str(exc)}}), flush=True)
    """
).format(shape=SHAPE)

REPLACER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import imgbench
    from imgbench.adapters.convert import convert

    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)

    how, path, backend, src, start, n = sys.argv[1:7]
    options = json.loads(sys.argv[7])
    try:
        if how == "open":
            with imgbench.open(path, "w", backend=backend, **options) as s:
                s.extend(np.stack([image(i) for i in range(int(start), int(start) + int(n))]),
                         labels=np.arange(int(start), int(start) + int(n)))
        else:
            convert(src, path, backend=backend, overwrite=True, **options)
        print(json.dumps({{"outcome": "replaced"}}))
    except imgbench.ImgbenchError as exc:
        print(json.dumps({{"outcome": type(exc).__name__, "message": str(exc)}}))
    """
).format(shape=SHAPE)


def leftovers(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".imgbench-" in name)


@pytest.mark.parametrize("how", ["open", "convert"])
def test_w_is_refused_while_another_process_appends(tmp_path, backend, layout, how):
    """The issue's reproduction: A opens a 20-image store with ``a``, appends 10 and waits; B opens the
    path with ``w`` (or converts onto it with --overwrite) -> StoreLockedError naming A; A appends 10
    more and closes; the store holds exactly A's 40 images."""
    path = store_path(tmp_path, backend)
    build(path, backend, layout, 0, OLD)
    source = store_path(tmp_path, backend, "source")
    if how == "convert":
        build(source, backend, "plain", 100, NEW)
    a = spawn(APPENDER, path, OLD, FIRST, SECOND)
    try:
        assert next_json(a) == {"holding": OLD + FIRST + SECOND // 2}
        b = finish(spawn(REPLACER, how, path, backend, source, 100, NEW, json.dumps(shard_options(layout))))
        assert b["outcome"] == "StoreLockedError", b
        assert f"pid {a.pid} on host " in b["message"] and "\n" not in b["message"], b["message"]
        a.stdin.write("go\n")
        a.stdin.flush()
        assert finish(a) == {"outcome": "closed"}
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    holds_exactly(path, 0, OLD + FIRST + SECOND)
    assert leftovers(tmp_path) == [], "the refused replacement left its temporary behind"
    # With the appender gone the lock is free: w replaces the store as it always did.
    b = finish(spawn(REPLACER, how, path, backend, source, 100, NEW, json.dumps(shard_options(layout))))
    assert b == {"outcome": "replaced"}
    holds_exactly(path, 100, NEW)


def test_appender_never_commits_into_a_store_swapped_in_under_it(tmp_path, backend, layout):
    """A program that takes no lock (an older imgbench, ``mv``) swaps another store in while A appends:
    A's close fails with StoreReplacedError (one line) and the store now at the path is untouched."""
    path = store_path(tmp_path, backend)
    other = store_path(tmp_path, backend, "other")
    aside = store_path(tmp_path, backend, "aside")
    build(path, backend, layout, 0, OLD)
    build(other, backend, layout, 100, NEW)
    a = spawn(APPENDER, path, OLD, FIRST, SECOND)
    try:
        assert next_json(a) == {"holding": OLD + FIRST + SECOND // 2}
        os.rename(path, aside)
        os.rename(other, path)
        a.stdin.write("go\n")
        a.stdin.flush()
        outcome = finish(a)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert outcome["outcome"] == "StoreReplacedError", outcome
    assert "was replaced" in outcome["message"] and "\n" not in outcome["message"]
    holds_exactly(path, 100, NEW)
    holds_exactly(aside, 0, OLD + FIRST)  # what A flushed before the swap, in the store it opened


REPLACING_HOLDER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import imgbench

    def image(i):
        return np.random.default_rng(i).integers(0, 256, {shape}, dtype=np.uint8)

    path, backend, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    s = imgbench.open(path, "w", backend=backend, **options)
    s.extend(np.stack([image(i) for i in range(100, 100 + {new})]), labels=np.arange(100, 100 + {new}))
    print(json.dumps({{"holding": True}}), flush=True)
    sys.stdin.readline()
    s.close()
    print(json.dumps({{"outcome": "closed"}}), flush=True)
    """
).format(shape=SHAPE, new=NEW)

SECOND_WRITER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import imgbench
    path, backend, mode, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        with imgbench.open(path, mode, backend=backend, **(options if mode == "w" else {})) as s:
            s.append(np.zeros({shape}, np.uint8), label=999)
        print(json.dumps({"outcome": "wrote"}))
    except imgbench.ImgbenchError as exc:
        print(json.dumps({"outcome": type(exc).__name__, "message": str(exc)}))
    """.replace("{shape}", repr(SHAPE))
)


@pytest.mark.parametrize("mode", ["a", "w"])
def test_writers_are_refused_while_another_process_replaces_the_store(tmp_path, backend, layout, mode):
    """While B replaces the store with ``w``, an appender (whose images the replacement would drop) or a
    second ``w`` gets StoreLockedError naming B; B then publishes exactly its images."""
    path = store_path(tmp_path, backend)
    options = json.dumps(shard_options(layout))
    build(path, backend, layout, 0, OLD)
    b = spawn(REPLACING_HOLDER, path, backend, options)
    try:
        assert next_json(b) == {"holding": True}
        other = finish(spawn(SECOND_WRITER, path, backend, mode, options))
        assert other["outcome"] == "StoreLockedError" and f"pid {b.pid} on host " in other["message"], other
        holds_exactly(path, 0, OLD)  # until B closes, the old store is what readers see
        b.stdin.write("close\n")
        b.stdin.flush()
        assert finish(b) == {"outcome": "closed"}
    finally:
        if b.poll() is None:
            b.kill()
            b.wait()
    holds_exactly(path, 100, NEW)
    assert leftovers(tmp_path) == []
