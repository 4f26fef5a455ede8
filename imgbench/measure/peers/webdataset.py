"""webdataset: ``webdataset.ShardWriter`` writes tar shards, ``webdataset.WebDataset`` reads them in sequence, ``wids`` at random."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.measure.peers._common import fsync_tree, stacked

COMPRESSION = "raw"
DURABILITY = "ShardWriter does not fsync; compare fsyncs every file and folder it wrote, inside the timed write"
#: images per shard
MAXCOUNT = 100_000
#: the shard list wids reads (its own JSON spec: url and sample count of each shard), written with the shards
SPEC = "shards.json"


def _shards(path: Path) -> list[str]:
    return sorted(str(p) for p in path.glob("shard-*.tar"))


def write(path: str | os.PathLike, images: Any, labels: Any) -> None:
    """Images as ``.npy`` members (webdataset's own encoder: ``np.save``), labels as ``.cls``; then fsync."""
    import webdataset as wds

    root = Path(os.fspath(path))
    root.mkdir(parents=True)
    with wds.ShardWriter(str(root / "shard-%06d.tar"), maxcount=MAXCOUNT, maxsize=1 << 40, verbose=0) as writer:
        for i in range(len(images)):
            sample = {"__key__": f"{i:09d}", "npy": np.asarray(images[i])}
            if labels is not None:
                sample["cls"] = int(labels[i])
            writer.write(sample)
    n = len(images)
    shards = [{"url": url, "nsamples": min(MAXCOUNT, n - k * MAXCOUNT)} for k, url in enumerate(_shards(root))]
    (root / SPEC).write_text(json.dumps({"wids_version": 1, "shardlist": shards}))
    fsync_tree(root)


def read_all(path: str | os.PathLike) -> tuple[Any, np.ndarray | None]:
    """``WebDataset(shards).decode()`` iterated once, in order."""
    import webdataset as wds

    samples = list(wds.WebDataset(_shards(Path(os.fspath(path))), shardshuffle=False).decode())
    labels = np.asarray([s["cls"] for s in samples]) if samples and "cls" in samples[0] else None
    return stacked([s["npy"] for s in samples]), labels


def _in_place(url: str) -> str:
    return url


class _Reader:
    def __init__(self, path: str | os.PathLike):
        import wids

        root = Path(os.fspath(path))
        spec = json.loads((root / SPEC).read_text())["shardlist"]
        # read the shards in place: by default wids first copies every shard, local ones too, into a cache
        # folder named by the shard's file name alone (a rewritten store would read a stale copy)
        # wids prints its shard list on stderr and warns about its own default decoder: keep the terminal clean
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._ds = wids.ShardListDataset(spec, localname=_in_place)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._ds[i][".npy"]

    def close(self) -> None:
        ds, self._ds = self._ds, None
        if hasattr(ds, "close"):
            ds.close()


def open_random(path: str | os.PathLike) -> _Reader | None:
    """``wids.ShardListDataset[i]``; None (random read n/a) when wids is not installed."""
    try:
        import wids  # noqa: F401
    except ImportError:
        return None
    return _Reader(path)
