"""A sharded reader opened before a legal ``w`` replacement never reports damage (issue 20).

Plain lmdb and hdf5 readers keep reading the store they opened when ``w`` swaps a new one in;
a sharded reader opens its shards on first use, and the replaced dataset's shards are gone by
then. So it keeps reading the shards it had open (those of every backend but disk, which opens
each image's file as it reads it), and for any other it raises
``StoreReplacedError`` ("replaced since it was opened; reopen it"), never ``CorruptStoreError``
("shard ... holds 5 images; the manifest says 1") and never the new dataset's pixels. The
replacing writer is a process of its own.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import imgbench

from .. import scripts

REPLACER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import imgbench
    with imgbench.open(sys.argv[1], "w", backend=sys.argv[2], images_per_shard=5) as s:
        s.extend(np.full((10, 6, 6), 200, np.uint8))
    print("replaced", flush=True)
    """
)


def old_image(i: int) -> np.ndarray:
    return np.full((6, 6), i, np.uint8)


@pytest.mark.parametrize("backend", imgbench.backends())
def test_sharded_reader_opened_before_w_is_told_replaced_never_damaged(tmp_path, backend):
    path = tmp_path / "ds"
    with imgbench.open(path, "w", backend=backend, images_per_shard=1) as s:
        s.extend(np.stack([old_image(i) for i in range(4)]), labels=[0, 1, 2, 3])
    reader = imgbench.open(path)
    try:
        assert np.array_equal(reader[0], old_image(0))  # shard 0 is open from here on
        proc = scripts.start(REPLACER, path, backend)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "replaced", err[-2000:]

        assert len(reader) == 4
        if backend == "disk":  # a disk shard opens each image's file when it is read: gone with the old dataset
            with pytest.raises(imgbench.StoreReplacedError):
                reader[0]
        else:
            assert np.array_equal(reader[0], old_image(0)), "what it had open it keeps reading"
        for attempt in (lambda: reader[2], lambda: reader.read_many(), lambda: reader.labels,
                        lambda: reader.read_many([0, 3])):
            with pytest.raises(imgbench.StoreReplacedError, match="replaced since it was opened; reopen it") as info:
                attempt()
            assert not isinstance(info.value, imgbench.CorruptStoreError) and "\n" not in str(info.value)
    finally:
        reader.close()
    with imgbench.open(path, verify=True) as fresh:
        assert len(fresh) == 10 and (fresh.read_many() == 200).all()
