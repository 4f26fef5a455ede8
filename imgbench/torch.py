"""Public name of :mod:`imgbench.adapters.torch` (code outside this repository imports it)."""

import sys

from imgbench.adapters import torch as _module

sys.modules[__name__] = _module
