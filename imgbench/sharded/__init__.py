"""Sharded datasets: a directory of shard stores (any backend) plus a JSON manifest.

Why: a dataset too big for one store, or written by many machines at once, is split
into ordinary stores (the shards), each published atomically, so a shard exists whole
or not at all; the manifest, written last, is the commit record that says which
shards make the dataset. ``imgbench.open(path)`` (or an ``s3://`` URL) reads it
through the usual Store contract.

Layout: docs/formats/sharded.md

Modules, one idea each (each imports only those above it):
:mod:`~imgbench.sharded.manifest` (the format: constants, checks, read/parse/build/write),
:mod:`~imgbench.sharded.build` (plan, shard_name, write_shard, finish, prepare; shared
with ``imgbench convert --workers``), :mod:`~imgbench.sharded.store` (the local
:class:`ShardedStore`) and :mod:`~imgbench.sharded.remote` (the URL reader and
:func:`open_dataset`). Public names are re-exported here.
"""

from imgbench.sharded.build import check_limit, finish, plan, prepare, shard_name, write_shard
from imgbench.sharded.manifest import (
    FORMAT,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    VERSION,
    build_manifest,
    describe_shard,
    detect,
    parse_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from imgbench.sharded.remote import RemoteShardedStore, detect_remote, open_dataset
from imgbench.sharded.store import MAX_OPEN_SHARDS, SHARD_OPTIONS, ShardedStore, wanted

__all__ = [
    "FORMAT", "MANIFEST", "MAX_MANIFEST_BYTES", "MAX_OPEN_SHARDS", "SHARD_OPTIONS", "VERSION",
    "RemoteShardedStore", "ShardedStore", "build_manifest", "check_limit", "describe_shard", "detect",
    "detect_remote", "finish", "open_dataset", "parse_manifest", "plan", "prepare", "read_manifest",
    "shard_name", "validate_manifest", "wanted", "write_manifest", "write_shard",
]
