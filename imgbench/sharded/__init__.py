"""Sharded datasets: a directory of shard stores (any backend) plus a JSON manifest.

The format is specified in docs/formats/sharded.md. Public names live here; the code is split
by idea in the modules of this package.
"""

from imgbench.sharded.dataset import (
    FORMAT,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    MAX_OPEN_SHARDS,
    SHARD_OPTIONS,
    VERSION,
    RemoteShardedStore,
    ShardedStore,
    build_manifest,
    check_limit,
    describe_shard,
    detect,
    detect_remote,
    finish,
    open_dataset,
    parse_manifest,
    plan,
    prepare,
    read_manifest,
    shard_name,
    validate_manifest,
    wanted,
    write_manifest,
    write_shard,
)

__all__ = [
    "FORMAT", "MANIFEST", "MAX_MANIFEST_BYTES", "MAX_OPEN_SHARDS", "SHARD_OPTIONS", "VERSION",
    "RemoteShardedStore", "ShardedStore", "build_manifest", "check_limit", "describe_shard", "detect",
    "detect_remote", "finish", "open_dataset", "parse_manifest", "plan", "prepare", "read_manifest",
    "shard_name", "validate_manifest", "wanted", "write_manifest", "write_shard",
]
