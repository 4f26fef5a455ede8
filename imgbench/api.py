"""The dispatcher: :func:`open` finds what is at a path or URL and hands it to the right store class.

It is the one layer that knows every kind of store (the backends in the registry, sharded
datasets, URL readers), so the questions "what is at this path?" (:func:`detect`) and "may
mode ``w`` replace it?" (:func:`check_replaceable`) are answered here too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imgbench import sharded
from imgbench.core import transport
from imgbench.core.errors import (
    ImgbenchError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedError,
)
from imgbench.core.store import MODES, Store
from imgbench.storage import registry


def detect(path: Path) -> type[Store]:
    """The class that reads the existing store at ``path``: a sharded dataset or a registered backend;
    CorruptStoreError when none recognises it."""
    if sharded.detect(path):  # a directory of shard stores plus a manifest
        return sharded.ShardedStore
    return registry.detect(path)


def is_store(path: Path) -> bool:
    """True when ``path`` holds a store of any kind (cheap: no full open)."""
    try:
        detect(path)
        return True
    except ImgbenchError:
        return False


def check_replaceable(path: Path) -> None:
    """Mode ``w`` replaces only an imgbench store or an empty directory, never anything else
    (a user's photo folder is safe): StoreExistsError otherwise."""
    if not os.path.lexists(path) or is_store(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "directory" if path.is_dir() else "file"
    raise StoreExistsError(
        f"{path} is a {kind} that is not an imgbench store; refusing to replace it. Remove it or choose another path"
    )


def open(  # noqa: A001 - the contract names it open
    path: str | os.PathLike,
    mode: str = "r",
    *,
    backend: str | None = None,
    compression: str | None = None,
    level: int | None = None,
    **options: Any,
) -> Store:
    """Open or create an image store; see docs/user-guide/api.md for modes and guarantees."""
    if mode not in MODES:
        raise UnsupportedError(f"mode {mode!r} is not one of 'r' (read), 'w' (replace), 'x' (create), 'a' (append)")
    if backend is not None and backend not in registry.backends():
        raise UnsupportedError(
            f"unknown backend {backend!r}; choose one of: {', '.join(registry.backends())}"
        )
    if transport.is_url(path):  # s3://bucket/x.zarr and other fsspec URLs: read-only, see imgbench.remote
        return open_url(path, mode, backend=backend, compression=compression, level=level, options=options)
    for remote_only in ("storage_options", "remote_timeout"):
        if options.pop(remote_only, None) is not None:
            raise UnsupportedError(f"{remote_only} apply to URLs such as s3://bucket/store, not to the local path {path}")
    try:
        path = Path(os.fspath(transport.local_path(path))).expanduser()
    except TypeError:
        raise UnsupportedError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if sharded.wanted(path, mode, options):  # a directory of shard stores plus a manifest (imgbench.sharded)
        if mode == "w":
            check_replaceable(path)
        return sharded.open_dataset(path, mode, backend=backend, compression=compression, level=level, options=options)
    if mode in ("r", "a"):
        if not os.path.lexists(path):
            raise StoreNotFoundError(
                f"no store at {path}" + ("; create one with mode='w' or 'x'" if mode == "a" else "")
            )
        cls = detect(path)
        if backend is not None and backend != cls.name:
            raise UnsupportedError(f"{path} is a {cls.name} store, not {backend}; drop backend= to detect it")
    else:
        if mode == "w":
            check_replaceable(path)
        cls = registry.get(backend) if backend is not None else registry.from_suffix(path)
    return cls(path, mode, compression, level, options)


def open_url(
    url: str, mode: str, *, backend: str | None, compression: str | None, level: int | None, options: dict[str, Any]
) -> Store:
    """:func:`imgbench.open` for a URL: a sharded dataset's reader when the listing names its manifest,
    else detect the backend remotely and open its reader."""
    if mode != "r":
        raise UnsupportedError(
            f"cannot open {url} with mode {mode!r}: stores on object stores are read-only in imgbench (a store "
            "becomes visible only when complete, by a rename object stores lack). Write it locally with "
            "imgbench.open(path, 'w'), upload it (aws s3 sync, or s3fs put(recursive=True)), then open the URL"
        )
    options = dict(options)
    storage_options = options.pop("storage_options", None)
    found = transport.probe(url, storage_options, options.get("remote_timeout"))
    if sharded.detect_remote(found):  # a sharded dataset: its manifest names the shards and their backend
        return sharded.open_dataset(transport.URL(url), mode, backend=backend, compression=compression, level=level,
                                    options={**options, "storage_options": storage_options})
    try:
        cls = registry.detect_remote(found)
    except Exception as exc:
        if transport.is_remote_failure(exc):
            raise transport.explain(exc, url, storage_options) from None
        raise
    if backend is not None and backend != cls.name:
        raise UnsupportedError(f"{url} is a {cls.name} store, not {backend}; drop backend= to detect it")
    reader = cls.remote_reader()
    return reader(transport.URL(url), "r", compression, level, {**options, "storage_options": storage_options})
