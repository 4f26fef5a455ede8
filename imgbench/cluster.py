"""Public name of :mod:`imgbench.adapters.cluster` (code outside this repository imports it)."""

import sys

from imgbench.adapters import cluster as _module

sys.modules[__name__] = _module
