"""Property-based: for any supported image the round trip is exact, on every backend and codec."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import imgbench
from imgbench.core import codecs

from ..conftest import same
from .backends import CONFIGS, config_id, kit_for

_counter = itertools.count()


@st.composite
def images(draw, dtypes, channels=(1, 2, 3, 4)):
    dtype = draw(st.sampled_from(dtypes))
    ndim = draw(st.sampled_from([2, 3]))
    shape = (draw(st.integers(1, 17)), draw(st.integers(1, 17)))
    if ndim == 3:
        shape += (draw(st.sampled_from(sorted(channels))),)
    return draw(hnp.arrays(dtype, shape, elements=None if dtype.kind == "f" else hnp.from_dtype(dtype)))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_any_images_round_trip(config):
    backend, compression = config
    kit = kit_for(backend)
    dtypes = kit.dtypes(compression)
    codec = codecs.CODECS.get(compression)
    channels = codec.channels if codec is not None else (1, 2, 3, 4)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=st.lists(images(dtypes, channels), min_size=1, max_size=6), labelled=st.booleans(), data=st.data())
    def check(batch, labelled, data):
        workdir = Path(tempfile.mkdtemp(prefix="imgbench-prop-"))
        try:
            path = kit.path(workdir, f"p{next(_counter)}")
            labels = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=len(batch), max_size=len(batch)))
            with imgbench.open(path, "w", backend=backend, compression=compression) as s:
                half = len(batch) // 2
                s.extend(batch[:half], labels=labels[:half] if labelled else None)
                for im, lab in zip(batch[half:], labels[half:]):
                    s.append(im, label=lab if labelled else None)
            with imgbench.open(path) as s:
                assert len(s) == len(batch)
                for i, im in enumerate(batch):
                    assert same(s[i], im)
                everything = s.read_many()
                assert all(same(everything[i], im) for i, im in enumerate(batch))
                order = data.draw(st.lists(st.integers(0, len(batch) - 1), max_size=8))
                picked = s.read_many(order)
                assert all(same(picked[k], batch[i]) for k, i in enumerate(order))
                assert (s.labels.tolist() if labelled else s.labels) == (labels if labelled else None)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    check()
