"""core.limits: one place for the decompression-bomb bounds, the same for scalars and whole index columns."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from imgbench.core import limits

sizes = st.integers(0, 1 << 40)


@given(stored=sizes, decoded=sizes, ratio=st.integers(1, 1 << 16), slack=st.integers(0, 1 << 20))
def test_a_limit_is_ratio_times_stored_plus_slack(stored, decoded, ratio, slack):
    assert limits.RatioLimit(ratio, slack).exceeded(decoded, stored) == (decoded > ratio * stored + slack)


@given(st.lists(st.tuples(sizes, sizes), min_size=1, max_size=50))
def test_arrays_give_the_scalar_answer_per_element(pairs):
    decoded = np.array([d for d, _ in pairs], np.float64)
    stored = np.array([s for _, s in pairs], np.float64)
    got = limits.PNG.exceeded(decoded, stored)
    assert got.tolist() == [limits.PNG.exceeded(float(d), float(s)) for d, s in pairs]


def test_the_values_are_the_codecs_physical_limits():
    """Changing one weakens (or breaks) a check on every backend at once: they are pinned here."""
    assert limits.DEFLATE_EXPANSION == 1032 and limits.DEFLATE_MAX_RATIO == 1040
    assert limits.ZSTD_MAX_RATIO == 1 << 15 and limits.HDF5_MAX_RATIO == 1 << 15
    assert limits.ZARR_MAX_RATIO == {"none": 1, "zstd": 1 << 16, "blosc": 1 << 16}
    assert limits.ZARR_SLACK_BYTES == 1 << 20 and limits.HDF5_INFLATE_FREE == 16 << 20
    assert (limits.PNG.ratio, limits.PNG.slack) == (1040, 4096)
    assert (limits.ZSTD_FRAME.ratio, limits.ZSTD_FRAME.slack) == (1 << 15, 65536)
    assert limits.DEFLATE_EXPANSION < limits.DEFLATE_MAX_RATIO  # the bound has room above what deflate does
