"""Zarr backend: images in zarr v3 arrays whose chunks live in shard objects (layout: docs/formats/zarr.md).

- :mod:`~imgbench.storage.zarr.layout`: names and numbers of the layout (record key, arrays, grid, codecs);
- :mod:`~imgbench.storage.zarr.checks`: checks of the commit record and array metadata against hostile stores;
- :mod:`~imgbench.storage.zarr.bounded_zstd`: the zstd codec readers decode with, bounded against bombs;
- :mod:`~imgbench.storage.zarr.localstore`: the store directory as zarr storage, pinned by readers;
- :mod:`~imgbench.storage.zarr.urlstore`: a store at a URL as zarr storage, for URL readers;
- :mod:`~imgbench.storage.zarr.store`: :class:`ZarrStore`, and :class:`RemoteZarrStore` for URLs.
"""

import zarr  # the zarr-python package (``imgbench.storage.zarr.zarr``), never this one

from imgbench.storage.zarr.layout import RECORD_KEY
from imgbench.storage.zarr.store import RemoteZarrStore, ZarrStore

__all__ = ["RECORD_KEY", "RemoteZarrStore", "ZarrStore", "zarr"]
