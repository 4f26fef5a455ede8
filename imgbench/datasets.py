"""Public name of :mod:`imgbench.adapters.datasets` (code outside this repository imports it)."""

import sys

from imgbench.adapters import datasets as _module

sys.modules[__name__] = _module
