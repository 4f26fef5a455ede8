"""Imported once by the forkserver of ``tests/scripts.py``: what the scripts import, so each fork starts ready."""

import numpy  # noqa: F401

import imgbench
import imgbench.adapters.integrity  # noqa: F401
from imgbench.storage import registry

for _name in imgbench.backends():
    registry.get(_name)

import imgbench.cli  # noqa: E402,F401  (the CLI of scripts.run_cli)
