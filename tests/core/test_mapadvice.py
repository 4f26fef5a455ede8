"""core.mapadvice and core.libc: advising the kernel about a file's map, found by the file's identity."""

from __future__ import annotations

import mmap
import sys

import pytest

from imgbench.core import libc, mapadvice

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps and madvise are Linux")


@linux
def test_the_shared_map_of_a_file_is_found_and_advised(tmp_path):
    path = tmp_path / "data.mdb"
    path.write_bytes(b"\0" * (64 << 10))
    assert mapadvice.mapping_of(path) is None, "not mapped yet"
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        found = mapadvice.mapping_of(path)
        assert found is not None and found[1] >= len(m)
        assert mapadvice.AVAILABLE and mapadvice.advise(path, mapadvice.SEQUENTIAL) == found
        assert mapadvice.advise(path, mapadvice.RANDOM) == found
    assert mapadvice.advise(tmp_path / "missing", mapadvice.RANDOM) is None


def test_libc_is_loaded_once_and_missing_functions_are_none():
    assert libc.libc() is libc.libc()
    assert libc.function("no_such_function_in_any_libc") is None
    if sys.platform.startswith("linux"):
        assert libc.function("madvise") is not None
