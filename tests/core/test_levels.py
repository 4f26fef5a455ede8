"""core.levels: the one rule every codec and container applies to a requested compression level."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgbench.core import codecs
from imgbench.core.errors import UnsupportedError
from imgbench.core.levels import LevelRange, check_level

ranges = st.tuples(st.integers(-5, 30), st.integers(0, 30)).map(lambda t: (t[0], t[0] + t[1])).flatmap(
    lambda lh: st.builds(LevelRange, st.just(lh[0]), st.just(lh[1]), st.integers(lh[0], lh[1])))


@given(levels=ranges, level=st.integers(-50, 50))
def test_a_level_is_accepted_exactly_inside_its_range(levels, level):
    if levels.low <= level <= levels.high:
        got = check_level("zstd", level, levels)
        assert got == level and type(got) is int
    else:
        with pytest.raises(UnsupportedError, match=f"level {level} is out of range for 'zstd': use an integer "
                                                   f"from {levels.low} to {levels.high}"):
            check_level("zstd", level, levels)


@given(levels=ranges)
def test_no_level_means_the_default(levels):
    assert check_level("gzip", None, levels) == levels.default


@given(levels=ranges, level=st.integers(0, 9))
def test_numpy_integers_count_and_come_back_as_int(levels, level):
    if levels.low <= level <= levels.high:
        got = check_level("blosc", np.int64(level), levels)
        assert got == level and type(got) is int


@pytest.mark.parametrize("level", [True, False, 1.0, "3", [3]])
def test_only_integers_are_levels(level):
    with pytest.raises(UnsupportedError, match="out of range"):
        check_level("zstd", level, LevelRange(0, 22, 3))


@given(level=st.one_of(st.integers(), st.booleans()))
def test_a_compression_without_levels_takes_none(level):
    assert check_level("lzf", None, None) is None
    with pytest.raises(UnsupportedError, match=f"compression 'lzf' takes no level; drop level={level!r}"):
        check_level("lzf", level, None)


def test_codecs_use_the_same_rule():
    png, raw = codecs.CODECS["png"], codecs.CODECS["none"]
    assert png.default_level == 1 and png.check_level(None) == 1 and png.check_level(9) == 9
    assert codecs.CODECS["zstd"].default_level == 3
    with pytest.raises(UnsupportedError, match="level 10 is out of range for 'png': use an integer from 0 to 9"):
        png.check_level(10)
    assert raw.default_level is None and raw.check_level(None) is None
    with pytest.raises(UnsupportedError, match="takes no level"):
        raw.check_level(1)
