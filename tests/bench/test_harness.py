"""The measurement harness (imgbench.measure.harness): the rules every measurement relies on.

No timings are asserted here: speed is shown by benchmarks, not unit tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgbench.measure import harness
from imgbench.measure.harness import allocator


# ------------------------------------------------------------ medians, spreads
def test_summarize_known_inputs():
    s = harness.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "spread": pytest.approx(9.0 / 2.5), "n": 4}
    assert harness.summarize([4.0]) == {"median": 4.0, "min": 4.0, "max": 4.0, "spread": 0.0, "n": 1}
    assert harness.summarize([0.0, 0.0, 1.0])["spread"] == 0.0  # a zero median gives no spread, not a division error
    assert harness.summarize([]) is None


samples = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50)


@given(samples, st.randoms())
def test_summarize_holds_for_all_samples(values, rng):
    s = harness.summarize(values)
    assert s["n"] == len(values) and s["min"] == min(values) and s["max"] == max(values)
    assert s["min"] <= s["median"] <= s["max"] and s["spread"] >= 0
    if s["median"] > 0:
        assert s["spread"] == pytest.approx((s["max"] - s["min"]) / s["median"])
    shuffled = list(values)
    rng.shuffle(shuffled)
    assert harness.summarize(shuffled) == s  # the order of the repeats does not matter


# -------------------------------------------------------- interleaved repeats
def test_interleaved_runs_every_item_once_per_repeat():
    assert list(harness.interleaved("ab", 3)) == [(0, ["a", "b"]), (1, ["a", "b"]), (2, ["a", "b"])]
    assert list(harness.interleaved("ab", 3, alternate=True)) == [(0, ["a", "b"]), (1, ["b", "a"]), (2, ["a", "b"])]
    assert list(harness.interleaved("ab", 0)) == []


@given(st.lists(st.integers(), min_size=1, max_size=8, unique=True), st.integers(0, 12), st.booleans())
def test_interleaved_holds_for_all_items(items, repeats, alternate):
    rounds = list(harness.interleaved(items, repeats, alternate=alternate))
    assert [r for r, _ in rounds] == list(range(repeats))
    for _, order in rounds:
        assert sorted(order) == sorted(items)  # each repeat runs every item exactly once
    if alternate and len(items) > 1:
        firsts = [order[0] for _, order in rounds]
        assert abs(firsts.count(items[0]) - firsts.count(items[-1])) <= 1  # neither side always goes first


# --------------------------------------------------------------- exactness
def test_mismatch_catches_dtype_shape_value_and_count_differences():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    assert harness.mismatch(a.copy(), a) is None and harness.same_images(a.copy(), a)
    assert "dtype" in harness.mismatch(a.astype(np.int16), a)
    assert "shape" in harness.mismatch(a[:1], a)
    assert "shape" in harness.mismatch(a.reshape(2, 4, 3), a)
    changed = a.copy()
    changed[1, 2, 3] += 1
    assert "values" in harness.mismatch(changed, a)
    assert "not an array" in harness.mismatch(list(a), a)  # a stacked write reads back stacked
    assert "not an array" in harness.mismatch(None, a)


def test_mismatch_of_images_of_different_shapes_checks_each_one():
    images = [np.zeros((2, 3), np.uint8), np.ones((4, 1), np.uint8)]
    assert harness.same_images([im.copy() for im in images], images)
    assert "2 images were read, not 1" in harness.mismatch(images, images[:1])
    assert "image 1" in harness.mismatch([images[0], images[1].astype(np.uint16)], images)
    assert "image 1" in harness.mismatch([images[0], images[1][:2]], images)
    uniform = [np.zeros((2, 2), np.uint8)] * 3
    assert harness.same_images(np.zeros((3, 2, 2), np.uint8), uniform)  # a list written may read back stacked


arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements={"allow_nan": False},
)


@given(arrays, st.data())
def test_exactness_holds_for_all_arrays(images, data):
    assert harness.same_images(images.copy(), images)
    k = data.draw(st.integers(0, images.size - 1))
    changed = images.copy()
    flat = changed.reshape(-1)
    flat[k] = 1 if flat[k] == 0 else 0
    assert not harness.same_images(changed, images)  # any one value off is caught
    assert not harness.same_images(images.astype(np.float64), images)  # equal values in another dtype are caught


# -------------------------------------------------------------- page cache
@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    (root / "sub").mkdir(parents=True)
    for name in ("a", "b", "sub/c"):
        (root / name).write_bytes(os.urandom(10_000))
    return root


def test_evict_runs_on_a_file_and_on_every_file_of_a_store(store):
    before = {p: p.read_bytes() for p in harness.store_files(store)}
    assert sorted(p.relative_to(store).as_posix() for p in before) == ["a", "b", "sub/c"]
    assert harness.evict(store / "a") == 1
    assert harness.evict(store) == 3
    assert {p: p.read_bytes() for p in harness.store_files(store)} == before  # eviction never changes data
    harness.warm(store)  # and the files load back
    assert harness.evict(store / "missing") == 0


def test_prepare_write_removes_what_an_earlier_repeat_wrote(store, tmp_path):
    raw = tmp_path / "raw.npy"
    raw.write_bytes(b"x")
    harness.prepare_write(store)
    harness.prepare_write(raw)
    harness.prepare_write(tmp_path / "never-written")
    assert not store.exists() and not raw.exists()


# --------------------------------------------------------- raw .npy reference
def test_raw_npy_reference_reads_back_what_it_wrote(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (20, 4, 4, 3), dtype=np.uint8)
    path = tmp_path / "raw.npy"
    harness.write_raw_npy(path, images)
    out = np.zeros_like(images)
    assert harness.read_raw_npy(path, out) is out and harness.same_images(out, images)
    mapped = harness.map_raw_npy(path)
    idx = np.array([7, 0, 19, 3])
    picked = np.zeros((len(idx), *images.shape[1:]), images.dtype)
    assert harness.same_images(harness.take_raw_npy(mapped, idx, picked), images[idx])
    assert harness.same_images(harness.read_raw_npy_loop(mapped, idx.tolist()), list(images[idx]))


def test_raw_npy_reference_never_unpickles(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        harness.read_raw_npy(path, np.zeros(1, dtype=object))


# --------------------------------------------------------------- allocator
def test_allocator_tuned_records_the_setting_and_restores_glibc_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_mallopt", lambda *setting: calls.append(setting) or True)
    with harness.allocator_tuned() as record:
        assert record["mallopt"] is True and "M_MMAP_MAX=0" in record["detail"]
        assert calls == [allocator.TUNED]
    assert calls == [allocator.TUNED, allocator.GLIBC_DEFAULTS]


def test_allocator_without_glibc_says_so_and_restores_nothing(monkeypatch):
    calls = []

    def no_glibc(*setting):
        calls.append(setting)
        raise OSError("no libc")

    monkeypatch.setattr(allocator, "_mallopt", no_glibc)
    with pytest.raises(RuntimeError), harness.allocator_tuned() as record:
        assert record == {"mallopt": False, "detail": record["detail"]} and "not glibc" in record["detail"]
        raise RuntimeError("the measurement failed")
    assert calls == [allocator.TUNED]  # nothing took effect, so nothing is restored


# -------------------------------------------------------- machine, progress
def test_machine_info_and_versions_describe_this_machine(tmp_path):
    import imgbench

    info = harness.machine_info(tmp_path)
    assert info["cores"] >= 1 and info["python"] and info["os"]
    assert info["filesystem"] is None or " on /" in info["filesystem"]
    assert harness.machine_info()["filesystem"] is None
    found = harness.versions()
    assert found["imgbench"] == imgbench.__version__ and found["numpy"] == np.__version__


def test_progress_bar_goes_to_stderr_and_a_quiet_one_does_nothing(capsys):
    with harness.progress_bar(None, "converting", enabled=False) as bar:
        bar(1, "text")
        bar.set_total(3)
        bar.advance(2)
    assert capsys.readouterr() == ("", "")
    with harness.progress_bar(None, "converting") as bar:
        bar.set_total(3)
        bar.advance(1)
        bar(2, "a description longer than the column it is shown in, cut to fit")
    out, err = capsys.readouterr()
    assert out == "" and "done" in err and "3/3" in err
    harness.no_progress(1, "nothing happens")
