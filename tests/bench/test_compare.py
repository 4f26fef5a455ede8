"""The comparison matrix: planning, measuring, checking, and the compare command."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import imgbench
from imgbench import datasets
from imgbench.cli import main
from imgbench.measure import compare
from imgbench.storage import registry


def tiny_plan(**kw) -> compare.Plan:
    ds = compare.builtin_dataset("cifar", [3, 12])
    defaults = dict(datasets=[ds], settings=compare.settings_for(), repeats=2, random_reads=5)
    defaults.update(kw)
    return compare.Plan(**defaults)


# ------------------------------------------------------------------ planning
def test_default_settings_cover_every_backend_default_plus_one():
    settings = compare.settings_for()
    for name in imgbench.backends():
        mine = [s.compression for s in settings if s.backend == name and not s.only_16bit]
        offered = registry.get(name).compressions
        assert mine[0] == offered[0], name
        assert len(mine) == min(2, len(offered)) and len(set(mine)) == len(mine)
        assert set(mine) <= set(offered)
        # one of the two compresses: the comparison is "raw vs compressed" for every backend
        if len(offered) > 1:
            assert any(c != "none" for c in mine) and "none" in mine or "none" not in offered


def test_settings_filters_and_errors():
    only = compare.settings_for(["lmdb"], ["zstd", "default"])
    assert [s.label for s in only] == ["lmdb/zstd", "lmdb/none"]
    with pytest.raises(compare.CompareError, match="unknown backend 'nosuch'"):
        compare.settings_for(["nosuch"])
    with pytest.raises(compare.CompareError, match="no chosen backend offers compression 'brotli'"):
        compare.settings_for(None, ["brotli"])


def test_parse_counts():
    assert compare.parse_counts(["100", "10,1e3", "10"]) == [10, 100, 1000]
    for bad in (["x"], ["0"], ["2.5"], [""]):
        with pytest.raises(compare.CompareError):
            compare.parse_counts(bad)


def test_default_counts_follow_the_byte_budget():
    assert compare.default_counts(3072, 64 << 20, 1000) == [10, 100, 1000]
    assert compare.default_counts(512 * 512 * 2, 64 << 20, 1000) == [10, 100]
    assert compare.default_counts(3072, 64 << 20, 1000, available=350) == [10, 100, 350]
    assert compare.default_counts(10**9, 64 << 20, 1000) == [1]


def test_builtin_datasets_and_shapes():
    ds = compare.builtin_dataset("ct:64x48", [2])
    assert ds.images.shape == (2, 64, 48) and ds.images.dtype == np.uint16
    np.testing.assert_array_equal(ds.images, datasets.ct_slices(2, shape=(64, 48)))
    ds = compare.builtin_dataset("cifar", quick=True)
    assert ds.counts == [10, 100, 1000] and ds.images.shape == (1000, 32, 32, 3)
    for bad in ("nope", "cifar:64", "ct:8x8x3", "cifar:axb"):
        with pytest.raises(compare.CompareError):
            compare.builtin_dataset(bad, [1])


def test_same_images_detects_every_kind_of_difference():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    assert compare.same_images(a.copy(), a)
    b = a.copy()
    b[1, 2, 3] += 1
    assert not compare.same_images(b, a)
    assert not compare.same_images(a.astype(np.int16), a)
    assert not compare.same_images(a[:1], a)
    assert compare.same_images([a[0], a[1]], [a[0].copy(), a[1].copy()])
    assert not compare.same_images([a[0], a[1][:2]], [a[0], a[1]])
    assert not compare.same_images([a[0]], [a[0], a[1]])


def test_summarize_median_and_spread():
    s = compare.summarize([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    assert s["spread"] == pytest.approx(9.0 / 2.5)


# ----------------------------------------------------------------- measuring
def test_run_measures_every_cell_and_checks_reads(tmp_path):
    plan = tiny_plan(workdir=tmp_path / "work")
    calls = []
    results = compare.run(plan, lambda n, text: calls.append(n))
    cells = 2 * len([s for s in plan.settings if not s.only_16bit])  # the cifar dataset: 8-bit
    assert sum(calls) == plan.steps() == cells * 3
    runs = results["runs"]
    assert len(runs) == cells
    for r in runs:
        assert r["status"] == "ok" and r["exact"], r
        assert len(r["write_s"]) == len(r["read_s"]) == len(r["random_s"]) == 2
        for key in ("write_s", "read_s", "random_s"):
            st = r["stats"][key]
            assert 0 < st["min"] <= st["median"] <= st["max"]
        assert r["raw_bytes"] == r["count"] * 32 * 32 * 3
        assert r["disk"]["allocated"] > 0 and r["disk"]["apparent"] > 0 and r["disk"]["files"] >= 1
        assert r["random_reads"] == min(5, r["count"])
        assert r["peak_memory"]["read"] > 0
        assert r["derived"]["random_latency_us"] == pytest.approx(
            r["stats"]["random_s"]["median"] / r["random_reads"] * 1e6)
    disk = [r for r in runs if r["backend"] == "disk" and r["count"] == 12]
    assert all(r["disk"]["files"] >= 12 for r in disk)  # one file per image
    # stores are cleaned up: nothing left in the work folder
    assert not any((tmp_path / "work").iterdir())
    assert results["machine"]["cores"] >= 1 and results["versions"]["imgbench"] == imgbench.__version__
    json.dumps(results)  # the document is JSON as it stands


def test_a_wrong_read_is_caught(tmp_path, monkeypatch):
    real = compare._time_read_all

    def corrupting(path):
        elapsed, got, labels = real(path)
        if "lmdb" in str(path):
            got = got.copy()
            got.reshape(-1)[0] ^= 1
        return elapsed, got, labels

    monkeypatch.setattr(compare, "_time_read_all", corrupting)
    results = compare.run(tiny_plan(workdir=tmp_path))
    bad = {r["backend"] for r in results["runs"] if not r["exact"]}
    assert bad == {"lmdb"}
    assert not compare.all_exact(results)
    assert all("differs" in m for r in results["runs"] for m in r["mismatches"])


def test_unsupported_combination_is_reported_not_fatal(tmp_path):
    images = np.random.default_rng(0).standard_normal((4, 6, 6)).astype(np.float32)
    ds = compare.Dataset("floats", "float32 test", images, None, [4])
    settings = [compare.Setting("disk", "png"), compare.Setting("hdf5", "none")]
    results = compare.run(compare.Plan([ds], settings, repeats=1, random_reads=2, workdir=tmp_path))
    by = {r["backend"]: r for r in results["runs"]}
    assert by["disk"]["status"] == "unsupported" and "float32" in by["disk"]["reason"]
    assert by["hdf5"]["status"] == "ok" and by["hdf5"]["exact"]


def test_cold_cache_run_and_evict(tmp_path):
    results = compare.run(tiny_plan(cache="cold", repeats=1, workdir=tmp_path,
                                    settings=[compare.Setting("disk", "none")]))
    assert results["config"]["cache"] == "cold" and all(r["exact"] for r in results["runs"])
    assert "evicted" in results["method"]["read_all"]
    (tmp_path / "d").mkdir()
    for k in range(3):
        (tmp_path / "d" / f"{k}").write_bytes(b"x" * 100)
    assert compare.evict(tmp_path / "d") == 3


def test_mixed_size_source_round_trips(tmp_path):
    import imagecodecs

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(5)
    for k, shape in enumerate([(5, 7, 3), (9, 4, 3), (6, 6, 3)]):
        (src / f"{k}.png").write_bytes(imagecodecs.png_encode(rng.integers(0, 65535, shape, dtype=np.uint16)))
    ds = compare.source_dataset(src)
    assert isinstance(ds.images, list) and ds.counts == [3]
    results = compare.run(compare.Plan([ds], compare.settings_for(), repeats=1, random_reads=3, workdir=tmp_path))
    assert all(r["status"] == "ok" and r["exact"] for r in results["runs"])


# ---------------------------------------------------------------------- CLI
def test_cli_compare_writes_report_and_json(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["compare", "--datasets", "cifar", "ct:32x32", "--counts", "4", "9", "--repeats", "2",
                 "--random-reads", "20", "--backends", *imgbench.backends(), "--out", str(out), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Fastest to read all" in text and "report.html" in text
    results = json.loads((out / "results.json").read_text())
    assert results["command"][:2] == ["imgbench", "compare"]
    assert {r["backend"] for r in results["runs"]} == set(imgbench.backends())
    assert {(r["dataset"], r["count"]) for r in results["runs"]} == {
        (d, n) for d in ("cifar", "ct:32x32") for n in (4, 9)}
    page = (out / "report.html").read_text()
    # write, read, random, bytes, throughput and parallel read (on by default from the CLI) per dataset
    assert page.count("<svg") == 2 * 6
    assert {r["dataset"] for r in results["parallel_read"]["runs"]} == {"cifar", "ct:32x32"}
    # self-contained: nothing to fetch (only in-page references such as url(#clip) or href="#id")
    assert not re.search(r"<script|<link|<img|@import|(?:src|href)=(?![\"']?#)|url\((?!#)", page)
    assert "Recommendation" in page and results["machine"]["cpu"] in page
    assert {p.name for p in out.iterdir()} == {"report.html", "results.json"}  # work stores removed


def test_cli_compare_with_source(tmp_path, capsys):
    import imagecodecs

    src = tmp_path / "photos" / "a"
    src.mkdir(parents=True)
    for k in range(3):
        (src / f"{k}.png").write_bytes(imagecodecs.png_encode(np.full((8, 8, 3), k, np.uint8)))
    out = tmp_path / "r"
    assert main(["compare", "--source", str(tmp_path / "photos"), "--quick", "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [d["name"] for d in results["datasets"]] == ["photos"]
    assert results["datasets"][0]["labelled"] is True


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--counts", "ten"], "--counts takes whole numbers"),
        (["--backends", "nosuch"], "unknown backend"),
        (["--compressions", "brotli"], "no chosen backend offers"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--datasets", "imagenet"], "unknown dataset"),
        (["--source", "{tmp}/missing"], "no such folder"),
        (["--source", "{tmp}/empty"], "holds no images"),
        (["--out", "{tmp}/afile"], "is a file"),
        (["--cache", "lukewarm"], "invalid choice"),
    ],
)
def test_cli_compare_bad_input_one_line(tmp_path, capsys, argv, expect):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    try:
        code = main(["compare", "-q", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and expect in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()
