"""Report: recommendations derived from the figures, tables and the self-contained HTML."""

from __future__ import annotations

import json

import pytest

from imgbench.measure import compare
from imgbench.present import report


def fake_run(backend, compression, count, write, read, random, allocated, files=2, exact=True):
    raw = count * 3072
    cell = {
        "dataset": "cifar", "backend": backend, "compression": compression, "count": count, "cache": "warm",
        "raw_bytes": raw, "random_reads": min(count, 10), "status": "ok", "reason": None,
        "write_s": [write, write * 1.01, write * 0.99], "read_s": [read, read * 1.02, read * 0.98],
        "random_s": [random] * 3, "exact": exact, "mismatches": [],
        "disk": {"apparent": allocated, "allocated": allocated, "files": files},
        "peak_memory": {"write": 1000, "read": 2000},
    }
    compare._finish(cell)
    return cell


def fake_results(runs):
    return {
        "imgbench_results": 1, "created": "2026-01-01T00:00:00+00:00", "elapsed_s": 12.0,
        "config": {"repeats": 3, "cache": "warm", "settings": [], "backends": []},
        "method": {"timer": "perf_counter", "allocator": {"detail": "mallopt"}},
        "machine": {"cpu": "Test CPU 9000", "cores": 2}, "versions": {"imgbench": "0.1.0", "numpy": "2"},
        "datasets": [{"name": "cifar", "about": "photos", "counts": sorted({r["count"] for r in runs}),
                      "shapes": {"32x32x3 uint8": 100}}],
        "notes": [], "runs": runs,
    }


def test_recommendation_names_the_winners_from_the_figures():
    runs = [
        fake_run("a", "none", 100, write=0.10, read=0.010, random=0.001, allocated=400_000),
        fake_run("b", "zstd", 100, write=0.50, read=0.050, random=0.004, allocated=200_000),
        fake_run("c", "png", 100, write=0.05, read=0.200, random=0.010, allocated=300_000, files=101),
        fake_run("a", "none", 10, write=9.0, read=9.0, random=9.0, allocated=1),  # smaller count: ignored
    ]
    lines = report.recommend(fake_results(runs))["cifar"]
    text = "\n".join(lines)
    assert "Fastest to read all: a/none" in text and "5.0x faster than the runner-up b/zstd" in text
    assert "Fastest to write: c/png" in text
    assert "Fastest random access: a/none" in text
    assert "Smallest on disk: b/zstd" in text
    assert "Trade-off: b/zstd" in text and "saves 50%" in text and "reads 5.0x slower" in text
    assert "c/png keeps one file per image (101 files for 100 images)" in text


def test_close_figures_are_called_a_tie():
    runs = [
        fake_run("a", "none", 100, write=0.10, read=0.0100, random=0.001, allocated=400_000),
        fake_run("b", "none", 100, write=0.30, read=0.0105, random=0.002, allocated=400_000),
    ]
    text = "\n".join(report.recommend(fake_results(runs))["cifar"])
    assert "Fastest to read all: a tie between a/none and b/none" in text
    assert "Fastest to write: a/none" in text and "3.0x faster than the runner-up b/none" in text


def test_mismatch_is_flagged_everywhere():
    runs = [fake_run("a", "none", 100, 0.1, 0.01, 0.001, 400_000, exact=False),
            fake_run("b", "zstd", 100, 0.2, 0.02, 0.002, 200_000)]
    results = fake_results(runs)
    assert any("WARNING" in line and "a/none x100" in line for line in report.recommend(results)["cifar"])
    assert "class=bad>NO<" in report.render_html(results)


def test_html_holds_tables_plots_machine_and_versions(tmp_path):
    runs = [fake_run("a", "none", n, 0.001 * n, 0.0002 * n, 0.0001, 3072 * n) for n in (10, 100)]
    runs += [fake_run("b", "zstd", n, 0.002 * n, 0.0004 * n, 0.0002, 1500 * n) for n in (10, 100)]
    results = fake_results(runs)
    paths = report.write(results, tmp_path / "out")
    page = paths["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 5
    assert "Write time vs number of images" in page and "Read-all time vs number of images" in page
    assert "Bytes on disk" in page and "Throughput" in page
    assert "Test CPU 9000" in page and "numpy" in page
    assert page.count("<tr>") >= 1 + len(runs)
    assert report.load(paths["json"]) == json.loads(json.dumps(results))


def fake_parallel(backend, compression, count, seconds_by_workers, exact=True):
    """A parallel-read row as imgbench.parallel_read.run makes it: samples per worker count, then finish()."""
    from imgbench import parallel_read

    cell = {
        "dataset": "cifar", "backend": backend, "compression": compression, "count": count,
        "raw_bytes": count * 3072, "cache": "warm", "status": "ok", "reason": None, "exact": exact,
        "mismatches": [] if exact else ["repeat 1, 2 workers: worker 1: image 7 differs from what was written"],
        "shards": 2, "by_workers": {
            k: {"elapsed_s": list(times),
                "per_worker": [[{"images": count // k, "elapsed_s": t, "cpu_s": t} for _ in range(k)] for t in times]}
            for k, times in seconds_by_workers.items()
        },
    }
    parallel_read.finish(cell)
    return cell


def test_html_and_terminal_show_the_parallel_read(tmp_path):
    from rich.console import Console

    runs = [fake_run("a", "none", n, 0.001 * n, 0.0002 * n, 0.0001, 3072 * n) for n in (10, 100)]
    results = fake_results(runs)
    results["parallel_read"] = {
        "workers": [1, 2], "processes": 2, "start_method": "spawn", "startup_s": 0.8, "warmup_s": 0.1, "shards": 2,
        "repeats": 3, "cache": "warm", "method": "barrier",
        "runs": [fake_parallel("a", "none", 100, {1: [0.10, 0.11, 0.09], 2: [0.06, 0.05, 0.07]}),
                 fake_parallel("b", "zstd", 100, {1: [0.20] * 3, 2: [0.20] * 3}, exact=False)],
    }
    a, b = results["parallel_read"]["runs"]
    assert a["by_workers"][1]["images_per_s"] == pytest.approx(100 / 0.06)
    assert a["by_workers"][1]["speedup"] == pytest.approx(0.10 / 0.06)
    page = report.render_html(results)
    assert page.count("<svg") == 6 and "Parallel read: aggregate images/s vs workers" in page
    assert "ideal (linear)" in page and "Reading in parallel" in page
    assert "1.67x" in page and "83%" in page  # speed-up and efficiency of a/none with 2 workers
    assert "image 7 differs" in page and "class=bad>NO<" in page
    console = Console(width=160, record=True)
    report.print_summary(results, console=console)
    text = console.export_text()
    assert "parallel read of 100 images in 2 shards" in text and "1.67x" in text and "NO" in text


def test_terminal_summary(capsys):
    from rich.console import Console

    runs = [fake_run("a", "none", 100, 0.1, 0.01, 0.001, 400_000),
            fake_run("b", "zstd", 100, 0.2, 0.02, 0.002, 200_000)]
    console = Console(width=160, record=True)
    report.print_summary(fake_results(runs), console=console, out_dir="/somewhere")
    text = console.export_text()
    assert "a/none" in text and "b/zstd" in text and "Fastest to read all" in text
    assert "/somewhere/report.html" in text


@pytest.mark.parametrize("value, text", [(5e-6, "5 µs"), (0.0123, "12.3 ms"), (2.5, "2.50 s"), (None, "-")])
def test_fmt_time(value, text):
    assert report.fmt_time(value) == text


def test_every_series_has_its_own_look_and_every_backend_its_own_colour():
    """11 settings of 6 backends: the old palette gave disk/png and disk/none one blue, and 11 series 10 colours."""
    from imgbench.present import plots

    settings = ["disk/png", "disk/none", "hdf5/none", "hdf5/zstd", "lmdb/none", "lmdb/zstd", "npy/none",
                "tar/none", "tar/png", "zarr/none", "zarr/zstd"]
    style = plots.styles(settings)
    assert len(set(style.values())) == len(settings)
    colours = {s.split("/")[0]: c for s, (c, _, _) in style.items()}
    assert len(set(colours.values())) == 6
    assert all(style[s][0] == colours[s.split("/")[0]] for s in settings)


@pytest.mark.parametrize("value, text", [(10, "10"), (100, "100"), (1000, "1k"), (10_000, "10k"), (13, "13"),
                                         (2_500_000, "2.5M")])
def test_count_ticks_read_as_people_say_them(value, text):
    from imgbench.present import plots

    assert plots.human_count(value) == text


def test_source_counts_are_ticked_where_measured():
    """--source with 10 and 13 images read '1.05x10^1 ... 1.3x10^1' on a log axis."""
    from imgbench.present import plots

    assert plots._count_ticks([10, 13, 10]) == [10.0, 13.0]
    assert plots._count_ticks([10, 20, 50, 100, 200, 500, 1000]) == [10.0, 100.0, 1000.0]
    assert plots.human_seconds(0.01) == "10 ms" and plots.human_bytes(3_100_000) == "3.1 MB"


def test_plots_are_small_multiples_with_the_legend_outside(tmp_path):
    runs = [fake_run(b, c, n, 0.001 * n, 0.0002 * n, 0.0001, 3072 * n)
            for b, c in (("a", "none"), ("a", "zstd"), ("b", "none")) for n in (10, 100)]
    from imgbench.present import plots

    svg = plots.plot_vs_count(fake_results(runs), "cifar", "write_s", "seconds", "Write time")
    assert svg.count('id="axes_') == 2  # one panel per backend
    assert "a/zstd" in svg and "other backends" in svg and "fill_between" not in svg
