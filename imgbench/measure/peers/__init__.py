"""Peers inside ``imgbench compare --peers``: other dataset formats measured with their own writers and readers.

One module per peer (:mod:`.litdata`, :mod:`.mds`, :mod:`.webdataset`); this registry maps a
peer's name to its module and to the packages it imports, like fsspec's registry of import
strings, so that naming a peer never imports it and a missing package is a one-line note
naming the extra (``pip install 'imgbench[peers]'``) instead of a crash.

Every adapter module offers the same few names, which :mod:`imgbench.measure.compare` times
exactly as it times imgbench's own backends:

- ``COMPRESSION`` -- how the peer stores the pixels (``raw``: the array bytes as they are);
- ``DURABILITY`` -- what the peer does to make a write durable, and what compare adds;
- ``write(path, images, labels)`` -- the peer's own writer; returns when every file is on disk;
- ``read_all(path) -> (images, labels)`` -- open + the peer's own sequential reader + close;
- ``open_random(path) -> reader | None`` -- the peer's random-access reader (``reader[i]`` is an
  image, ``reader.close()``), or None when the peer has none installed (random read n/a).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from imgbench.measure.matrix import CompareError

#: how to install every peer at once
EXTRA = "pip install 'imgbench[peers]'"


@dataclass(frozen=True)
class Peer:
    """A peer's adapter module and the packages it needs (imported only when the peer is measured)."""

    name: str
    module: str
    requires: tuple[str, ...]
    #: packages that only add random access (missing: random read is n/a, the rest is measured)
    optional: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "litdata": Peer("litdata", "imgbench.measure.peers.litdata", ("litdata",)),
    "mds": Peer("mds", "imgbench.measure.peers.mds", ("streaming",)),
    "webdataset": Peer("webdataset", "imgbench.measure.peers.webdataset", ("webdataset",), optional=("wids",)),
}


def known() -> list[str]:
    """Names ``--peers`` accepts."""
    return list(PEERS)


def backend_name(name: str) -> str:
    """The ``backend`` a peer's rows carry in results.json (``peer:litdata``), apart from imgbench's own."""
    return f"peer:{name}"


def parse(names: Sequence[str] | None) -> list[str]:
    """Validate ``--peers`` names (in order, once each); an unknown name is a one-line error listing the known."""
    chosen = list(dict.fromkeys(names or ()))
    for name in chosen:
        if name not in PEERS:
            raise CompareError(f"unknown peer {name!r} in --peers; choose from: {', '.join(PEERS)}")
    return chosen


def load(name: str) -> tuple[ModuleType | None, str | None]:
    """The peer's adapter module, or None and a one-line note saying why it is skipped and how to install it."""
    peer = PEERS[name]
    for package in peer.requires:
        try:
            importlib.import_module(package)
        except Exception as exc:  # noqa: BLE001  a broken install (e.g. a torchvision that fails to load) too
            if isinstance(exc, ImportError) and exc.name in (package, None):
                why = "is not installed"
            else:  # installed, but a dependency is missing or broken (e.g. torchvision for streaming)
                why = f"fails to import ({type(exc).__name__}: {exc})"
            return None, f"peer {name} skipped: {package} {why}; install it with {EXTRA}"
    return importlib.import_module(peer.module), None


def random_note(name: str) -> str | None:
    """A note when a peer's random-access package is missing (its random read is then n/a), else None."""
    for package in PEERS[name].optional:
        try:
            importlib.import_module(package)
        except Exception:  # noqa: BLE001
            return f"peer {name}: random read n/a ({package} is not installed; {EXTRA})"
    return None
