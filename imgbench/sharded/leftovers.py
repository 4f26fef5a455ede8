"""What a killed appender leaves in a sharded dataset's directory, and the dataset's own size.

An appender publishes each shard when it is full but names it in the manifest only on
``flush()``/``close()``; killed between the two, it leaves shards the manifest does not name
(and the temporary of the shard it was writing, and perhaps the manifest's). They are not
part of the dataset: the next appender removes them under the writer lock
(:func:`remove_leftovers`), and ``imgbench info`` lists them apart and never counts them in
the dataset's size (:func:`dataset_usage`). Files the user put there (anything imgbench would
not have named so) are never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from imgbench.core import atomic
from imgbench.core.usage import disk_usage
from imgbench.sharded.manifest import MANIFEST

#: a shard name imgbench gives (``shard-00003``, ``shard-00003.lmdb``...; see docs/formats/sharded.md)
_SHARD = re.compile(r"shard-\d{5,}(\.[A-Za-z0-9]+)?")
#: the hidden temporary of a store written in the directory: ``.<name>.imgbench-<kind>-<host>-<pid>-<token>``
_TEMP = re.compile(r"\.(?P<store>.+?)\.imgbench-")
#: the manifest's own temporary (``atomic.write_file``): ``.imgbench-shards.json.<random>.part``
_MANIFEST_TEMP = re.compile(re.escape(f".{MANIFEST}.") + r"[^/]+\.part")


def find_leftovers(directory: str | os.PathLike, named: Iterable[str]) -> list[str]:
    """Entries of the dataset ``directory`` an imgbench writer left and the manifest does not name.

    Shards under imgbench's own names that ``named`` (the manifest's names) lacks, temporaries of
    writers that died on this host, and temporaries of the manifest (only the lock holder writes it)."""
    named = set(named)
    found = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    for name in entries:
        if name == MANIFEST or name in named:
            continue
        if _SHARD.fullmatch(name):
            found.append(name)
        elif _MANIFEST_TEMP.fullmatch(name):
            found.append(name)
        else:
            match = _TEMP.match(name)
            parsed = atomic.parse_temp_name(name, match["store"]) if match else None
            if parsed is None:
                continue
            if parsed[1] != atomic.host_tag() or not atomic.is_dead(parsed[2]):
                continue
            found.append(name)
    return found


def remove_leftovers(directory: Path, named: Iterable[str]) -> list[str]:
    """Remove :func:`find_leftovers` of ``directory``; only an appender holding the writer lock calls this."""
    names = find_leftovers(directory, named)
    for name in names:
        atomic.remove(directory / name)
    return names


def dataset_usage(directory: str | os.PathLike, named: Iterable[str]) -> dict[str, int]:
    """:func:`imgbench.disk_usage` of the dataset proper: its manifest and the shards it names."""
    return usage_of(directory, [MANIFEST, *named])


def usage_of(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, int]:
    """:func:`imgbench.disk_usage` summed over the entries ``names`` of ``directory`` (missing ones add nothing)."""
    total = {"apparent": 0, "allocated": 0, "files": 0}
    for name in names:
        try:
            part = disk_usage(Path(directory) / name)
        except FileNotFoundError:
            continue
        total = {key: total[key] + part[key] for key in total}
    return total
