"""Backend registry: name -> implementation, suffixes, and detection of existing stores.

Entries are import strings, resolved on first use (as fsspec does), so
``import imgbench`` stays fast and one backend's missing dependency does not
break the others.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from imgbench.core.errors import CorruptStoreError, UnsupportedError

#: name -> ("module:Class", file suffixes that imply this backend)
_BACKENDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "disk": ("imgbench.storage.disk:DiskStore", ()),
    "hdf5": ("imgbench.storage.hdf5.store:HDF5Store", (".h5", ".hdf5")),
    "lmdb": ("imgbench.storage.lmdb:LMDBStore", (".lmdb",)),
    "npy": ("imgbench.storage.npy:NpyStore", ()),
    "tar": ("imgbench.storage.tar.store:TarStore", ()),
    "zarr": ("imgbench.storage.zarr.store:ZarrStore", (".zarr",)),
}
_loaded: dict[str, type] = {}


def register(name: str, target: str, suffixes: tuple[str, ...] = ()) -> None:
    """Register a backend class given as ``"package.module:Class"``."""
    _BACKENDS[name] = (target, tuple(suffixes))
    _loaded.pop(name, None)


def backends() -> list[str]:
    """Sorted names of the registered backends."""
    return sorted(_BACKENDS)


def get(name: str) -> type:
    if name not in _BACKENDS:
        raise UnsupportedError(f"unknown backend {name!r}; choose one of: {', '.join(backends())}")
    if name not in _loaded:
        module, _, attr = _BACKENDS[name][0].partition(":")
        _loaded[name] = getattr(importlib.import_module(module), attr)
    return _loaded[name]


def suffixes(name: str) -> tuple[str, ...]:
    """The file suffixes that name backend ``name`` (empty for an unknown name)."""
    return _BACKENDS[name][1] if name in _BACKENDS else ()


def from_suffix(path: Path) -> type:
    """The backend a new store's suffix names, e.g. ``.lmdb``; error when it names none."""
    suffix = path.suffix.lower()
    for name, (_, suffixes) in sorted(_BACKENDS.items()):
        if suffix in suffixes:
            return get(name)
    hints = ", ".join(f"{s} ({n})" for n, (_, ss) in sorted(_BACKENDS.items()) for s in ss)
    choices = ", ".join(backends())
    raise UnsupportedError(
        f"cannot tell the backend from {path.name!r}: pass backend= (one of {choices}) or use a suffix: {hints}",
        cli=f"cannot tell the backend from {path.name!r}: pass --backend NAME (one of {choices}) "
        f"or use a suffix: {hints}",
    )


def detect(path: Path) -> type:
    """The backend of the existing store at ``path``; CorruptStoreError when none recognises it.
    (Sharded datasets are recognised above this layer, by :func:`imgbench.api.detect`.)"""
    for name in backends():
        cls = get(name)
        if cls.detect(path):
            return cls
    kind = "directory" if path.is_dir() else "file"
    raise CorruptStoreError(
        f"{path} is a {kind} that no imgbench backend recognises ({', '.join(backends())}); "
        "it is not an imgbench store, or it is damaged"
    )


def detect_remote(probe) -> type:
    """The backend of the store at a URL (``probe``: an :class:`imgbench.remote.Probe`); CorruptStoreError when
    none recognises it. Backends that cannot read remotely still recognise their stores, to say so."""
    for name in backends():
        cls = get(name)
        if cls.detect_remote(probe):
            return cls
    kind = "an object" if probe.names is None else "a prefix"
    raise CorruptStoreError(
        f"{probe.url} is {kind} that no imgbench backend recognises ({', '.join(backends())}); "
        "it is not an imgbench store (upload the whole store directory), or it is damaged"
    )
