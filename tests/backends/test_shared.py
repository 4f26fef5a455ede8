"""What the backends' files share: commit records written through imgbench.core.atomic, the thread pool
that encodes and decodes images (imgbench.core.parallel)."""

from __future__ import annotations

import os


def test_commit_records_are_as_readable_as_other_files(tmp_path):
    """A record written through a private temp file still gets the usual permissions (umask)."""
    from imgbench.core import atomic

    old = os.umask(0o022)
    try:
        atomic.write_file(tmp_path / "record.json", b"{}")
        assert os.stat(tmp_path / "record.json").st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic.write_file(tmp_path / "private.json", b"{}")
        assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o600
    finally:
        os.umask(old)

def test_few_large_items_are_spread_over_threads():
    """16 CT slices must not land in one 32-item chunk on one thread."""
    import threading
    import time

    from imgbench.core import parallel

    seen: set[int] = set()
    parallel.map_items(lambda x: (seen.add(threading.get_ident()), time.sleep(0.01)), list(range(16)), threads=2)
    assert len(seen) == 2
