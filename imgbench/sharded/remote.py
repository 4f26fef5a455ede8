"""Sharded datasets at a URL (``s3://bucket/dataset``), and :func:`open_dataset`, which picks local or remote.

:class:`RemoteShardedStore` is the local reader with remote I/O: the manifest is
fetched as one object and checked by the same code as a local one
(:func:`imgbench.sharded.manifest.parse_manifest`), and each shard is opened by its
backend's remote reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imgbench.core import transport
from imgbench.core.errors import UnsupportedError
from imgbench.core.store import Store
from imgbench.core.transport import URL, RemoteStore
from imgbench.sharded import manifest
from imgbench.sharded.store import ShardedStore


class RemoteShardedStore(RemoteStore, ShardedStore):
    """A sharded dataset read from a URL (``s3://bucket/dataset``): the local reader with remote I/O.

    The manifest is fetched as one object and checked by :func:`parse_manifest`;
    each shard is the remote reader of its backend (zarr, tar, hdf5), opened
    on first use at ``URL/name`` with the dataset's ``storage_options`` and
    checked against the manifest like a local shard (count, compression,
    labels, checksum digests). Datasets of lmdb, npy or disk shards are refused
    when opened, with the reason their backend gives.
    """

    def __init__(self, path: URL, mode: str, compression: str | None, level: int | None, options: dict,
                 backend: str | None = None):
        # The manifest (read first, to learn the shards' backend) needs the endpoint and credentials.
        self.options = {"storage_options": options.get("storage_options"),
                        "remote_timeout": options.get("remote_timeout")}
        super().__init__(path, mode, compression, level, options, backend=backend)

    def _read_manifest(self) -> dict[str, Any]:
        fs, root = self._remote_fs()
        key = self._remote_key(root, manifest.MANIFEST)
        end = manifest.MAX_MANIFEST_BYTES + 1  # the bound parse_manifest checks, as a local read
        raw = self._remote_call(manifest.MANIFEST, lambda: fs.cat_file(key, start=0, end=end))
        return manifest.parse_manifest(raw, self.path)

    def _shard_class(self, inner: str) -> type[Store]:
        try:
            return super()._shard_class(inner).remote_reader()
        except UnsupportedError as exc:
            raise UnsupportedError(f"{self.path} is a sharded dataset of {inner} shards, and {exc}") from None

    def _find_shard(self, path: URL, where: str) -> bool | None:
        try:
            probe = transport.probe(path, self.options["storage_options"], self.options["remote_timeout"])
        except FileNotFoundError:
            return None
        return self._remote_call(f"shard {path.name}", lambda: self._inner_cls.detect_remote(probe))


def detect_remote(probe: transport.Probe) -> bool:
    """True when the URL ``probe`` describes is a sharded dataset (its listing names the manifest)."""
    return probe.names is not None and manifest.MANIFEST in probe.names


def open_dataset(
    path: Path | URL,
    mode: str,
    *,
    backend: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> ShardedStore:
    """What :func:`imgbench.open` calls for a sharded dataset (see :func:`imgbench.sharded.wanted`), and
    :func:`imgbench.api.open_url` for one at a URL (read-only; ``options`` may hold ``storage_options``)."""
    cls = RemoteShardedStore if isinstance(path, URL) else ShardedStore
    return cls(path, mode, compression, level, dict(options or {}), backend=backend)
