"""Modes r/w/x/a and their atomicity, in one process (other processes: test_processes.py, kills: test_crashes.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import imgbench

from .. import scripts
from ..conftest import same, sample, snapshot, store_path


def make(path, backend, n=5, seed=0, labels=True, **kw):
    batch = np.stack([sample((6, 7, 3), np.uint8, seed=seed + i) for i in range(n)])
    with imgbench.open(path, "w", backend=backend, **kw) as s:
        s.extend(batch, labels=np.arange(n) if labels else None)
        s.attrs["seed"] = seed
    return batch


def siblings(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_read_missing_store(tmp_path, backend):
    with pytest.raises(imgbench.StoreNotFoundError, match="no store"):
        imgbench.open(store_path(tmp_path, backend))
    with pytest.raises(FileNotFoundError):
        imgbench.open(store_path(tmp_path, backend), "a")


def test_x_refuses_anything_existing(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    before = snapshot(path)
    with pytest.raises(imgbench.StoreExistsError, match="already exists"):
        imgbench.open(path, "x", backend=backend)
    assert snapshot(path) == before
    plain = tmp_path / "somefile.txt"
    plain.write_text("keep me")
    with pytest.raises(FileExistsError):
        imgbench.open(plain, "x", backend=backend)
    assert plain.read_text() == "keep me"


def test_w_replaces_only_on_clean_close(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend, seed=0)
    old = snapshot(path)
    s = imgbench.open(path, "w", backend=backend)
    s.extend(np.zeros((3, 2, 2), np.uint16))
    s.flush()
    # The old store is intact and readable while the new one is written.
    assert snapshot(path) == old
    s.close()
    new = snapshot(path)
    assert new[0] == 3 and new[3] is None
    assert siblings(path) == [], "no temporary left behind"


def test_w_aborted_by_exception_keeps_old_store(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    old = snapshot(path)
    with pytest.raises(RuntimeError, match="boom"):
        with imgbench.open(path, "w", backend=backend) as s:
            s.extend(np.ones((4, 3, 3), np.uint8))
            raise RuntimeError("boom")
    assert snapshot(path) == old
    assert siblings(path) == []


def test_x_aborted_leaves_nothing(tmp_path, backend):
    path = store_path(tmp_path, backend)
    with pytest.raises(imgbench.InvalidImageError):
        with imgbench.open(path, "x", backend=backend) as s:
            s.append(np.zeros((4, 4), np.uint8))
            s.append(np.zeros((4, 4), np.float64))
    assert not os.path.lexists(path)
    assert siblings(path) == []


def test_writer_never_closed_is_never_published(tmp_path, backend):
    path = store_path(tmp_path, backend)
    s = imgbench.open(path, "w", backend=backend)
    s.append(np.zeros((4, 4), np.uint8))
    with pytest.warns(ResourceWarning, match="never closed"):
        del s
        import gc

        gc.collect()
    assert not os.path.lexists(path)
    assert siblings(path) == []


def test_append_adds_and_keeps(tmp_path, backend):
    path = store_path(tmp_path, backend)
    batch = make(path, backend)
    extra = sample((6, 7, 3), np.uint8, seed=99)
    with imgbench.open(path, "a") as s:
        assert len(s) == 5 and s.backend == backend
        s.append(extra, label=42)
        assert len(s) == 6
    with imgbench.open(path) as s:
        assert len(s) == 6 and same(s[5], extra) and same(s[0], batch[0])
        assert s.labels.tolist() == [0, 1, 2, 3, 4, 42]
        assert s.attrs["seed"] == 0


def test_append_aborted_keeps_what_was_there(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    old = snapshot(path)
    with pytest.raises(RuntimeError):
        with imgbench.open(path, "a") as s:
            s.append(sample((6, 7, 3), np.uint8), label=1)
            s.attrs["changed"] = True
            raise RuntimeError("boom")
    assert snapshot(path) == old
    assert siblings(path) == []


def test_append_flush_makes_images_durable(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    s = imgbench.open(path, "a")
    s.append(sample((6, 7, 3), np.uint8, seed=7), label=7)
    s.flush()
    assert snapshot(path)[0] == 6, "flushed images are visible to new readers"
    s.append(sample((6, 7, 3), np.uint8, seed=8), label=8)
    s._abort_quietly()  # what a crash does to unflushed work
    assert snapshot(path)[0] == 6
    assert siblings(path) == []


def test_second_appender_gets_a_clear_error(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    with imgbench.open(path, "a"):
        with pytest.raises(imgbench.StoreLockedError, match="another process"):
            imgbench.open(path, "a")
    with imgbench.open(path, "a") as s:  # released after close
        assert len(s) == 5


def test_readers_are_unaffected_by_an_open_appender(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    old = snapshot(path)
    with imgbench.open(path, "a") as s:
        s.extend([sample((6, 7, 3), np.uint8, seed=50 + i) for i in range(3)], labels=[0, 0, 0])
        assert snapshot(path)[0] in (5, 8)
        assert snapshot(path)[1][:5] == old[1]
    assert snapshot(path)[0] == 8


def test_w_refuses_to_replace_what_is_not_a_store(tmp_path, backend):
    victim = tmp_path / "photos"
    victim.mkdir()
    (victim / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(imgbench.StoreExistsError, match="not an imgbench store"):
        imgbench.open(victim, "w", backend=backend)
    assert (victim / "holiday.jpg").read_bytes() == b"precious"
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    with pytest.raises(imgbench.StoreExistsError):
        imgbench.open(afile, "w", backend=backend)
    assert afile.read_text() == "x"


def test_w_may_replace_an_empty_directory_and_other_backends(tmp_path, backend):
    path = tmp_path / "target"
    path.mkdir()
    with imgbench.open(path, "w", backend=backend) as s:
        s.append(np.zeros((2, 2), np.uint8))
    for other in imgbench.backends():
        with imgbench.open(path, "w", backend=other) as s:
            s.append(np.full((2, 2), 7, np.uint8))
        with imgbench.open(path) as s:
            assert s.backend == other and s[0][0, 0] == 7


def test_parent_directories_are_created(tmp_path, backend):
    path = store_path(tmp_path / "a" / "b", backend)
    with imgbench.open(path, "x", backend=backend) as s:
        s.append(np.zeros((2, 2), np.uint8))
    assert imgbench.open(path).__len__() == 1


def test_write_mode_store_is_not_readable_and_read_mode_not_writable(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    with imgbench.open(path) as s:
        with pytest.raises(imgbench.UnsupportedError, match="read-only"):
            s.append(np.zeros((2, 2), np.uint8))
    with imgbench.open(path, "a") as s:
        with pytest.raises(imgbench.UnsupportedError, match="open for writing"):
            s[0]


def test_closed_store_refuses_use(tmp_path, backend):
    path = store_path(tmp_path, backend)
    make(path, backend)
    s = imgbench.open(path)
    s.close()
    s.close()  # idempotent
    with pytest.raises(imgbench.ImgbenchError, match="closed"):
        s[0]


def test_stale_temporaries_of_dead_writers_are_cleaned(tmp_path, backend):
    path = store_path(tmp_path, backend)
    code = (
        "import imgbench, numpy as np, os\n"
        f"s = imgbench.open({str(path)!r}, 'w', backend={backend!r})\n"
        "s.append(np.zeros((2, 2), np.uint8)); s.flush()\n"
        "os._exit(0)\n"
    )
    scripts.run(code, check=True, timeout=120)
    assert len(siblings(path)) == 1 and not os.path.lexists(path)
    make(path, backend)
    assert siblings(path) == []


def test_reader_keeps_reading_the_store_it_opened_or_fails(tmp_path, backend):
    """A `w` that replaces a store under an open reader never feeds it the new store's pixels."""
    path = store_path(tmp_path, backend)
    old = make(path, backend, n=5, seed=0)
    reader = imgbench.open(path)
    assert same(reader[0], old[0])
    new = make(path, backend, n=5, seed=100)
    assert snapshot(path)[1][0] == new[0].tobytes()
    for i in range(5):
        try:
            image = reader[i]
        except imgbench.CorruptStoreError as exc:
            assert "replaced" in str(exc) or "missing" in str(exc)
        else:
            assert same(image, old[i]), "an open reader returned pixels of the store that replaced it"
    reader.close()


def test_reader_opened_before_an_append_reads_what_it_opened(tmp_path, backend):
    path = store_path(tmp_path, backend)
    batch = make(path, backend, n=5)
    with imgbench.open(path) as reader:
        with imgbench.open(path, "a") as s:
            s.extend([sample((6, 7, 3), np.uint8, seed=90 + i) for i in range(3)], labels=[7, 7, 7])
        assert len(reader) == 5
        assert same(reader.read_many(), batch)
        assert reader.labels.tolist() == [0, 1, 2, 3, 4]
    assert snapshot(path)[0] == 8


@pytest.mark.parametrize("mode", ["w", "a"])
def test_a_writer_whose_write_failed_never_publishes(tmp_path, backend, mode, monkeypatch):
    """A caller who catches a failed write and carries on must not end up with a store missing images."""
    path = store_path(tmp_path, backend)
    make(path, backend)
    before = snapshot(path)
    s = imgbench.open(path, mode, backend=backend if mode == "w" else None)
    s.append(sample((6, 7, 3), np.uint8, seed=1), label=1)

    def fail(*args, **kwargs):
        raise imgbench.ImgbenchError("simulated: no space left on device")

    with monkeypatch.context() as m:
        m.setattr(type(s), "_write", fail)
        with pytest.raises(imgbench.ImgbenchError, match="no space"):
            s.flush()
    with pytest.raises(imgbench.ImgbenchError, match="earlier write failed"):
        s.append(sample((6, 7, 3), np.uint8, seed=2), label=2)
    with pytest.raises(imgbench.ImgbenchError, match="earlier write failed"):
        s.close()
    assert snapshot(path) == before
    assert siblings(path) == []
