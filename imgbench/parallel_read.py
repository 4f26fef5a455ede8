"""Public name of :mod:`imgbench.measure.parallel_read` (code outside this repository imports it)."""

import sys

from imgbench.measure import parallel_read as _module

sys.modules[__name__] = _module
