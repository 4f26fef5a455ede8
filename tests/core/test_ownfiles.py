"""core.ownfiles: a store's own files are opened, created and replaced never through a symlink or a FIFO."""

from __future__ import annotations

import os

import pytest

from imgbench.core import ownfiles
from imgbench.core.errors import CorruptStoreError


def test_write_own_creates_and_replaces_a_regular_file(tmp_path):
    ownfiles.write_own(tmp_path / "a.png", b"first, longer")
    ownfiles.write_own(tmp_path / "a.png", b"second")
    assert (tmp_path / "a.png").read_bytes() == b"second"
    dirfd = ownfiles.open_dir(tmp_path)
    try:
        ownfiles.write_own("b.npy", b"xy", dir_fd=dirfd)
        assert ownfiles.read_own("b.npy", 10, dirfd) == b"xy"
        assert ownfiles.read_own("b.npy", 1, dirfd) == b"x"
    finally:
        os.close(dirfd)


def test_write_own_never_writes_through_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    store = tmp_path / "store"
    store.mkdir()
    os.symlink(outside, store / "00000003.png")  # a leftover past the count, planted as a link
    with pytest.raises(CorruptStoreError, match="00000003.png is a symlink"):
        ownfiles.write_own(store / "00000003.png", b"pixels")
    assert outside.read_bytes() == b"precious"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        ownfiles.write_own(tmp_path / "fifo", b"x")  # no reader: a blocking open would hang here
    with pytest.raises(CorruptStoreError, match="not a regular file"):
        ownfiles.read_own(tmp_path / "fifo", 10)


def test_create_new_refuses_any_existing_name(tmp_path):
    fd, size = ownfiles.open_own(tmp_path / "index", flags=ownfiles.CREATE_NEW, mode=0o600)
    os.close(fd)
    assert size == 0 and (tmp_path / "index").stat().st_mode & 0o777 == 0o600 & ~_umask()
    with pytest.raises(FileExistsError):
        ownfiles.open_own(tmp_path / "index", flags=ownfiles.CREATE_NEW)
    os.symlink(tmp_path / "elsewhere", tmp_path / "dangling")
    with pytest.raises((FileExistsError, CorruptStoreError)):
        ownfiles.open_own(tmp_path / "dangling", flags=ownfiles.CREATE_NEW)
    assert not (tmp_path / "elsewhere").exists()


def test_open_dir_holds_the_directory_it_opened(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "f").write_bytes(b"old")
    dirfd = ownfiles.open_dir(tmp_path / "s")
    try:
        os.rename(tmp_path / "s", tmp_path / "moved")
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "f").write_bytes(b"new")
        assert ownfiles.read_own("f", 10, dirfd) == b"old"
    finally:
        os.close(dirfd)
    with pytest.raises(NotADirectoryError):
        ownfiles.open_dir(tmp_path / "s" / "f")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
