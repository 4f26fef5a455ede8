"""Parallel reads of a sharded dataset (imgbench.parallel_read) and `imgbench compare --parallel-workers`.

Tiny sizes: the point is that every worker reads exactly its share, that the
figures are computed from the recorded samples and that a wrong read fails the
run. Each reader pool is real (spawned processes), so the module starts only a
handful of them.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from imgbench import parallel_read, sharded
from imgbench.cli import main
from imgbench.measure import compare

#: one worker runs this module: the parallel reads are measured once (module fixture)
pytestmark = pytest.mark.xdist_group("parallel_read")


def corrupt_second_half(path: str, start: int, stop: int):
    """A reader (run in the worker processes) that flips one pixel of every share not starting at 0."""
    images = parallel_read.read_share(path, start, stop)
    if start > 0 and len(images):
        images = images.copy()
        images.reshape(-1)[0] ^= 1
    return images


def failing_reader(path: str, start: int, stop: int):
    raise OSError(5, "Input/output error", path)


def tiny_dataset(n: int = 10) -> compare.Dataset:
    return compare.builtin_dataset("cifar", [3, n])


# ------------------------------------------------------------------ planning
def test_parse_and_default_workers():
    assert parallel_read.default_workers(1) == [1]
    assert parallel_read.default_workers(2) == [1, 2]
    assert parallel_read.default_workers(4) == [1, 2, 3, 4]
    assert parallel_read.default_workers(12) == [1, 2, 4, 8, 12]
    assert parallel_read.parse_workers(["2", "1,4", "2"]) == [1, 2, 4]
    assert parallel_read.parse_workers(["0"]) == []
    assert parallel_read.parse_workers(None) == parallel_read.default_workers()
    for bad in (["x"], ["-1"], ["0", "2"], [""], ["1.5"], ["100000"]):
        with pytest.raises(compare.CompareError, match="parallel-workers"):
            parallel_read.parse_workers(bad)


def test_shards_split_evenly_between_workers():
    assert parallel_read.shard_count([1, 2]) == 4
    assert parallel_read.shard_count([1, 2, 3, 4]) == 24
    assert parallel_read.shard_count(range(1, 17)) == parallel_read.MAX_SHARDS
    bounds = sharded.plan(10, images_per_shard=3)  # 4 shards: 3, 3, 3, 1
    assert parallel_read.shares(bounds, 1) == [(0, 10)]
    assert parallel_read.shares(bounds, 2) == [(0, 6), (6, 10)]
    assert parallel_read.shares(bounds, 4) == bounds
    assert parallel_read.shares(bounds[:1], 2) == [(0, 0), (0, 3)]  # fewer shards than workers: one reads nothing


def test_byte_budget_caps_the_copy_read_in_parallel():
    ds = compare.builtin_dataset("cifar", [10, 100])
    assert parallel_read.count_within(ds, None) == 100
    assert parallel_read.count_within(ds, 3072 * 100) == 100
    assert parallel_read.count_within(ds, 3072 * 40 + 5) == 40
    assert parallel_read.count_within(ds, 1) == 1
    mixed = compare.Dataset("mixed", "", [np.zeros(s, np.uint8) for s in (100, 50, 50, 200)], None, [4])
    assert parallel_read.count_within(mixed, 200) == 3 and parallel_read.count_within(mixed, 10) == 1
    # compare: a budget only when the counts are the defaults; explicit counts are read in full
    assert compare.make_plan(datasets_=["cifar"], quick=True).parallel_max_bytes == compare.QUICK_PARALLEL_BUDGET
    plan = compare.make_plan(datasets_=["cifar"], counts=["10"], parallel_workers=["2"])
    assert plan.parallel_max_bytes is None and plan.parallel_workers == [2]
    assert plan.repeats == 5 and plan.parallel_repeats == compare.DEFAULT_PARALLEL_REPEATS == 3
    assert compare.make_plan(datasets_=["cifar"], counts=["10"], repeats=2).parallel_repeats == 2


def test_fingerprints_cover_dtype_shape_and_values():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    fp = parallel_read.fingerprints(a)
    assert fp.dtype == np.uint64 and len(fp) == 2
    np.testing.assert_array_equal(parallel_read.fingerprints([a[0].copy(), a[1].copy()]), fp)
    assert parallel_read.fingerprints(a.reshape(2, 4, 3))[0] != fp[0]  # same bytes, other shape
    assert parallel_read.fingerprints(a.view(np.int8))[0] != fp[0]  # same bytes, other dtype
    b = a.copy()
    b[1, 2, 3] += 1
    got = parallel_read.fingerprints(b)
    assert got[0] == fp[0] and got[1] != fp[1]
    assert len(parallel_read.fingerprints([])) == 0


# ----------------------------------------------------------------- measuring
@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    ds = tiny_dataset(12)
    settings = [compare.Setting("lmdb", "none"), compare.Setting("npy", "none"), compare.Setting("disk", "png")]
    calls = []
    section = parallel_read.run([ds], settings, work, [2, 1], repeats=3, progress=lambda n, t: calls.append(n))
    return section, ds, settings, work, calls


def test_every_worker_reads_its_share_exactly(measured):
    section, ds, settings, work, calls = measured
    assert section["workers"] == [1, 2] and section["processes"] == 2 and section["shards"] == 4
    assert section["startup_s"] > 0 and section["warmup_s"] > 0 and section["start_method"] == "spawn"
    assert sum(calls) == parallel_read.steps([ds], settings, [1, 2], 3) == 3 * 4
    assert [(r["backend"], r["compression"]) for r in section["runs"]] == [(s.backend, s.compression) for s in settings]
    for r in section["runs"]:
        assert r["status"] == "ok" and r["exact"] and r["mismatches"] == [], r
        assert r["count"] == 12 and r["shards"] == 4 and r["raw_bytes"] == 12 * 32 * 32 * 3
        assert [w["workers"] for w in r["by_workers"]] == [1, 2]
        for w in r["by_workers"]:
            assert len(w["elapsed_s"]) == len(w["per_worker"]) == 3
            for rep in w["per_worker"]:
                assert len(rep) == w["workers"]
                assert sum(p["images"] for p in rep) == r["count"]  # the shares add up to the whole dataset
                assert all(p["images"] == 12 // w["workers"] for p in rep)
    assert not any(work.iterdir())  # the sharded copies are removed
    json.dumps(section)


def test_figures_come_from_the_samples(measured):
    section = measured[0]
    for r in section["runs"]:
        one, two = r["by_workers"]
        for w in (one, two):
            med = statistics.median(w["elapsed_s"])
            assert w["stats"]["median"] == med and w["stats"]["n"] == 3
            assert w["images_per_s"] == pytest.approx(r["count"] / med)
            assert w["MB_per_s"] == pytest.approx(r["raw_bytes"] / med / 1e6)
            # the aggregate time runs from the first start to the last finish: no worker took longer
            for t, rep in zip(w["elapsed_s"], w["per_worker"]):
                assert max(p["elapsed_s"] for p in rep) <= t + 1e-9
            cores = [p["cpu_s"] / p["elapsed_s"] for rep in w["per_worker"] for p in rep]
            assert w["cpu_cores"] == pytest.approx(statistics.median(cores))
        assert one["speedup"] == 1.0 and one["efficiency"] == 1.0
        assert two["speedup"] == pytest.approx(two["images_per_s"] / one["images_per_s"])
        assert two["efficiency"] == pytest.approx(two["speedup"] / 2)


def test_a_worker_reading_wrong_data_fails_the_run(tmp_path):
    ds = tiny_dataset(8)
    section = parallel_read.run([ds], [compare.Setting("lmdb", "none")], tmp_path, [1, 2], repeats=1,
                                reader=corrupt_second_half)
    (r,) = section["runs"]
    assert r["status"] == "ok" and not r["exact"]
    # only the second worker of the 2-worker reads starts past 0: warm-up and the repeat
    assert r["mismatches"] == [
        f"{when}, 2 workers: worker 1: image 4 differs from what was written (dtype, shape or values; 1 of 4 images)"
        for when in ("warm-up", "repeat 1")
    ]
    assert r["by_workers"][0]["elapsed_s"] and not r["by_workers"][1]["elapsed_s"]  # bad reads are not figures
    assert r["by_workers"][1]["images_per_s"] is None
    assert not parallel_read.all_exact(section)
    assert not compare.all_exact({"runs": [], "parallel_read": section})


def test_a_failing_worker_is_reported_and_the_pool_goes_on(tmp_path):
    ds = tiny_dataset(6)
    with parallel_read.ReaderPool(2) as pool:
        path = tmp_path / "d"
        bounds = parallel_read.build(path, ds.images[:6], ds.labels[:6], "npy", "none", 2)
        assert bounds == [(0, 3), (3, 6)]
        reports = pool.read(path, parallel_read.shares(bounds, 2), failing_reader)
        assert all("OSError" in r["error"] and "Input/output error" in r["error"] for r in reports)
        problems = parallel_read.check(reports, [(0, 3), (3, 6)], parallel_read.fingerprints(ds.images[:6]))
        assert len(problems) == 2 and problems[0].startswith("worker 0 failed: OSError")
        # the same processes still read correctly afterwards
        reports = pool.read(path, [(0, 6)])
        assert parallel_read.check(reports, [(0, 6)], parallel_read.fingerprints(ds.images[:6])) == []
        assert reports[0]["images"] == 6 and reports[0]["end"] >= reports[0]["start"]
        with pytest.raises(parallel_read.ParallelReadError, match="3 shares for a pool of 2"):
            pool.read(path, [(0, 2), (2, 4), (4, 6)])


def test_check_names_a_short_read():
    want = parallel_read.fingerprints(np.zeros((4, 2, 2), np.uint8))
    report = {"start": 0.0, "end": 1.0, "cpu_s": 1.0, "images": 1, "fingerprints": want[:1]}
    assert parallel_read.check([report], [(0, 4)], want) == ["worker 0 read 1 images of its 4 (0..3)"]


def test_unsupported_setting_is_skipped_not_fatal(tmp_path):
    images = np.random.default_rng(0).standard_normal((4, 6, 6)).astype(np.float32)
    ds = compare.Dataset("floats", "float32 test", images, None, [4])
    section = parallel_read.run([ds], [compare.Setting("disk", "png")], tmp_path, [1], repeats=1)
    (r,) = section["runs"]
    assert r["status"] == "unsupported" and "float32" in r["reason"] and r["by_workers"] == []
    assert section["startup_s"] is None and parallel_read.all_exact(section)
    assert parallel_read.run([ds], [compare.Setting("disk", "png")], tmp_path, [], repeats=1) is None


# ---------------------------------------------------------------------- CLI
def test_cli_option_and_json_fields(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["compare", "--datasets", "cifar", "--counts", "4", "12", "--backends", "lmdb", "zarr",
                 "--compressions", "default", "--repeats", "2", "--random-reads", "3", "--parallel-workers", "2", "1",
                 "--out", str(out), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "parallel read of 12 images in 4 shards" in text
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["parallel_workers"] == [1, 2]
    assert "barrier" in results["method"]["parallel_read"]
    section = results["parallel_read"]
    assert {k for k in section} >= {"workers", "processes", "start_method", "startup_s", "warmup_s", "shards",
                                    "repeats", "cache", "method", "runs"}
    assert [(r["backend"], r["count"]) for r in section["runs"]] == [("lmdb", 12), ("zarr", 12)]
    for r in section["runs"]:
        assert r["exact"] and len(r["by_workers"]) == 2
        for w in r["by_workers"]:
            assert {"workers", "elapsed_s", "per_worker", "stats", "images_per_s", "MB_per_s", "speedup",
                    "efficiency", "cpu_cores"} <= set(w)
            assert len(w["elapsed_s"]) == 2
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 6 and "Parallel read: aggregate images/s vs workers" in page
    assert "Reading in parallel" in page and "ideal (linear)" in page
    assert {p.name for p in out.iterdir()} == {"report.html", "results.json"}


def test_cli_zero_skips_it(tmp_path):
    out = tmp_path / "r"
    assert main(["compare", "--datasets", "cifar", "--counts", "4", "--backends", "npy", "--repeats", "1",
                 "--random-reads", "2", "--parallel-workers", "0", "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["parallel_read"] is None and results["config"]["parallel_workers"] == []
    assert (out / "report.html").read_text().count("<svg") == 5


def test_cli_exits_1_when_a_worker_reads_wrong_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(parallel_read, "read_share", corrupt_second_half)
    out = tmp_path / "r"
    code = main(["compare", "--datasets", "cifar", "--counts", "6", "--backends", "npy", "--repeats", "1",
                 "--random-reads", "2", "--parallel-workers", "2", "--out", str(out), "-q"])
    assert code == 1
    assert "did not read back what was written" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert not results["parallel_read"]["runs"][0]["exact"]
    assert all(r["exact"] for r in results["runs"])  # the matrix itself was fine
    assert "class=bad" in (out / "report.html").read_text()


@pytest.mark.parametrize("value, expect",
                         [("two", "whole numbers"), ("-2", "at least 1"), ("0 1", "cannot be combined")])
def test_cli_bad_worker_counts_one_line(tmp_path, capsys, value, expect):
    code = main(["compare", "-q", "--out", str(tmp_path / "o"), "--parallel-workers", *value.split()])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
