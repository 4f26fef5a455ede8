"""HDF5 backend: images as one n-dimensional dataset in one file (layout: docs/formats/hdf5.md).

- :mod:`~imgbench.storage.hdf5.layout`: names and numbers of the layout (signature, filters, chunk sizes);
- :mod:`~imgbench.storage.hdf5.guards`: checks of a file's datasets and chunks against hostile files;
- :mod:`~imgbench.storage.hdf5.chunk_table`: direct ``pread`` of uncompressed chunks;
- :mod:`~imgbench.storage.hdf5.store`: :class:`HDF5Store`, and :class:`RemoteHDF5Store` for URLs;
- :mod:`~imgbench.storage.hdf5.remote`: how a URL reader gets the bytes (an fsspec file object).
"""

from imgbench.storage.hdf5.chunk_table import ChunkTable
from imgbench.storage.hdf5.store import HDF5Store, RemoteHDF5Store

#: the name the chunk table had before the backend became a package
_ChunkTable = ChunkTable

__all__ = ["ChunkTable", "HDF5Store", "RemoteHDF5Store"]
