"""Public name of :mod:`imgbench.core.errors` (code outside this repository imports it)."""

import sys

from imgbench.core import errors as _errors

sys.modules[__name__] = _errors
