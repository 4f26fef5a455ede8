"""Fixtures of the conformance suite: every registered backend, through its kit.

``kit`` is parametrised over ``imgbench.backends()``, so a newly registered backend
runs every contract test; a backend without a kit in ``backends.py`` fails them.
"""

from __future__ import annotations

import pytest

from .backends import BACKENDS, CONFIGS, Kit, config_id, kit_for


@pytest.fixture(params=BACKENDS)
def kit(request) -> Kit:
    return kit_for(request.param)


@pytest.fixture
def backend(kit) -> str:
    """The backend's name (overrides the root fixture: here it comes with a kit)."""
    return kit.name


@pytest.fixture(params=CONFIGS, ids=config_id)
def config(request) -> tuple[str, str]:
    """Every (backend, compression) the registry offers."""
    kit_for(request.param[0])
    return request.param
