"""Public name of :mod:`imgbench.adapters.convert` (``imgbench.convert.convert`` is documented API)."""

import sys

from imgbench.adapters import convert as _module

sys.modules[__name__] = _module
