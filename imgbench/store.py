"""Public name of the Store contract (:mod:`imgbench.core.store`) and of :func:`imgbench.api.open`,
where both lived before the layered package: a backend outside this repository subclasses
``imgbench.store.Store``."""

from imgbench.api import open
from imgbench.core.store import (
    FLUSH_BYTES,
    FORMAT_VERSION,
    MODES,
    Attrs,
    Store,
    check_meta,
    claim_new,
    stack_if_uniform,
)

__all__ = ["FLUSH_BYTES", "FORMAT_VERSION", "MODES", "Attrs", "Store", "check_meta", "claim_new", "open",
           "stack_if_uniform"]
