"""core.fileio: positional reads and writes that finish what one system call leaves short."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgbench.core import fileio
from imgbench.core.errors import CorruptStoreError

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
blobs = st.lists(st.binary(max_size=300), max_size=12)


@pytest.fixture
def fd(tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    yield fd
    os.close(fd)


def _short(real, most):
    """``real`` (os.pread/pwrite/pwritev) moving at most ``most`` bytes per call."""
    def pread(fd, size, offset):
        return real(fd, min(size, most), offset)

    def pwritev(fd, buffers, offset):
        return os.pwrite(fd, b"".join(bytes(b) for b in buffers)[:most], offset)

    return pread if real is os.pread else pwritev


@fixture_ok
@given(parts=blobs, start=st.integers(0, 100), most=st.integers(1, 64))
def test_pwrite_all_writes_everything_through_short_writes(fd, monkeypatch, parts, start, most):
    os.ftruncate(fd, 0)
    with monkeypatch.context() as m:
        m.setattr(os, "pwritev", _short(os.pwritev, most))
        end = fileio.pwrite_all(fd, parts, start)
    data = b"".join(parts)
    assert end == start + len(data)
    assert os.pread(fd, len(data) + 10, start) == data


@fixture_ok
@given(parts=blobs)
def test_pwrite_all_takes_any_buffer(fd, parts):
    arrays = [np.frombuffer(p, np.uint8) for p in parts] + [np.arange(6, dtype="<u2").reshape(2, 3)]
    end = fileio.pwrite_all(fd, [memoryview(a) if k % 2 else a for k, a in enumerate(arrays)], 0)
    data = b"".join(a.tobytes() for a in arrays)
    assert end == len(data) and os.pread(fd, end, 0) == data


def test_pwrite_all_refuses_a_write_that_moves_nothing(fd, monkeypatch):
    monkeypatch.setattr(os, "pwritev", lambda fd, buffers, offset: 0)
    with pytest.raises(OSError, match="write returned 0 at offset 5"):
        fileio.pwrite_all(fd, [b"abc"], 5)


@fixture_ok
@given(data=st.binary(max_size=500), offset=st.integers(0, 600), size=st.integers(0, 600), most=st.integers(1, 50))
def test_reads_finish_short_reads_and_stop_at_the_end(fd, monkeypatch, data, offset, size, most):
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    want = data[offset : offset + size]
    with monkeypatch.context() as m:
        m.setattr(os, "pread", _short(os.pread, most))
        assert fileio.read_fd(fd, size, offset) == want
        if len(want) == size:
            assert fileio.pread_exact(fd, size, offset, "f") == want
        else:
            with pytest.raises(CorruptStoreError, match=(
                f"^f is truncated: {size} bytes at offset {offset} were expected, {len(want)} found$"
            )):
                fileio.pread_exact(fd, size, offset, "f")


def test_a_whole_read_is_not_copied(fd):
    os.pwrite(fd, b"x" * 4096, 0)
    assert isinstance(fileio.pread_exact(fd, 4096, 0, "f"), bytes)
