"""Storage backends: one module per backend, and the registry that names them.

Adding a backend means writing one module with a :class:`imgbench.core.store.Store`
subclass and adding one line to ``_BACKENDS`` below; everything else (tests,
benchmarks, ``imgbench compare``) iterates over :func:`registry.backends`.
"""

from imgbench.storage import registry

__all__ = ["registry"]
