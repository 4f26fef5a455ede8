"""Storage backends: one module or subpackage per backend, and the registry that names them.

``disk``, ``npy`` and ``lmdb`` are modules (``lmdb_env`` holds lmdb's environments);
``hdf5``, ``tar`` and ``zarr`` are packages, one idea per module (layout, checks
against hostile stores, the store, its URL reader). Each store's layout is specified
in docs/formats/<backend>.md. Adding a backend means writing one module with a
:class:`imgbench.core.store.Store` subclass and adding one line to ``_BACKENDS`` in
:mod:`~imgbench.storage.registry`; everything else (tests, benchmarks, ``imgbench
compare``) iterates over :func:`registry.backends`. Backends never import each
other: what they share is in :mod:`imgbench.core`.
"""

from imgbench.storage import registry

__all__ = ["registry"]
