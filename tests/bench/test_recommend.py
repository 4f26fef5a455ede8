"""The recommendation rests on the repeats (issue 14): overlapping repeats are a tie, the raw reference is
never the overall pick unexplained, the file layout is read from the stores, and two runs agree or say tie."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imgbench.measure import compare
from imgbench.present import recommend as rec


def run(backend, count=100, write=(0.1,), read=(0.01,), random=(0.001,), allocated=400_000, files=2,
        compression="none"):
    cell = {
        "dataset": "cifar", "backend": backend, "compression": compression, "count": count, "cache": "warm",
        "raw_bytes": count * 3072, "random_reads": 10, "status": "ok", "reason": None,
        "write_s": list(write), "read_s": list(read), "random_s": list(random), "exact": True, "mismatches": [],
        "disk": {"apparent": allocated, "allocated": allocated, "files": files}, "peak_memory": {},
    }
    compare._finish(cell)
    return cell


def doc(runs, **config):
    return {"config": {"repeats": 3, "cache": "warm", **config},
            "datasets": [{"name": "cifar", "about": "photos", "counts": [], "shapes": {}}], "runs": runs}


def text(runs, **config) -> str:
    return "\n".join(rec.recommend(doc(runs, **config))["cifar"])


def test_a_wide_spread_makes_a_tie_even_when_the_medians_differ_twofold():
    """The issue's flip: npy/none's write spread was ±146%, so its 'win' over hdf5/none was noise."""
    runs = [run("npy", write=(0.010, 0.011, 0.035)), run("hdf5", write=(0.018, 0.020, 0.021))]
    assert "Fastest to write: a tie between npy/none and hdf5/none" in text(runs)


def test_clear_repeats_name_one_winner():
    runs = [run("npy", write=(0.010, 0.011, 0.012)), run("hdf5", write=(0.020, 0.021, 0.022))]
    out = text(runs)
    assert "Fastest to write: npy/none (11.0 ms for 100 images; 1.9x faster than the runner-up hdf5/none)" in out


def test_the_raw_reference_is_never_the_overall_pick_unexplained():
    runs = [run("npy", write=(0.01,) * 3, read=(0.001,) * 3), run("lmdb", write=(0.05,) * 3, read=(0.005,) * 3)]
    out = text(runs, raw_reference=["npy"])
    assert "Overall for these images: npy" not in out
    assert "Overall fastest: npy, the raw reference: uncompressed pixels" in out
    tied = [run("npy", write=(0.010,) * 3, read=(0.001,) * 3), run("lmdb", write=(0.0105,) * 3, read=(0.00102,) * 3)]
    assert "Among full stores, lmdb is as fast." in text(tied, raw_reference=["npy"])
    assert "Overall for these images: lmdb" in text(runs[1:], raw_reference=["npy"])


def test_file_layout_is_the_growth_of_the_stores_file_count():
    """zarr keeps a fixed handful of files (7 at 10 and at 100 images); it was called 'one file per image'
    because 7 >= 10 images was the old test's reading at small counts."""
    runs = [run("zarr", count=10, files=7), run("zarr", count=100, files=7),
            run("disk", count=10, files=11), run("disk", count=100, files=101)]
    out = text(runs)
    assert "disk/none keeps one file per image (101 files for 100 images)" in out
    assert "(zarr 7 files at 100 images)" in out and "zarr/none keeps one file" not in out
    assert rec.files_per_image(doc(runs), "cifar")["disk/none"][0] == 1.0


def test_the_overall_pick_of_the_old_api_is_kept_for_real_stores():
    runs = [run("lmdb", write=(0.01,) * 3, read=(0.001,) * 3), run("tar", write=(0.05,) * 3, read=(0.005,) * 3)]
    assert "Overall for these images: lmdb (among the fastest both to write and to read)." in text(runs)


repeats = st.lists(st.floats(0.001, 1.0), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(repeats, repeats), min_size=2, max_size=6))
def test_a_single_winner_is_clear_of_every_other_setting(samples):
    """For any repeats: a winner named alone has a median at least TIE below every other setting's, and
    repeats that do not reach into any other's range."""
    runs = [run(f"b{i}", write=w, read=r) for i, (w, r) in enumerate(samples)]
    for key, verdict in (("write_s", "write"), ("read_s", "read")):
        v = rec.verdicts(doc(runs))["cifar"][verdict]
        if v.tie:
            continue
        win = next(r for r in runs if f"{r['backend']}/none" == v.winners[0])
        for other in runs:
            if other is win:
                continue
            assert win["stats"][key]["max"] < other["stats"][key]["min"]
            assert other["stats"][key]["median"] > win["stats"][key]["median"] * (1 + rec.TIE)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(repeats, repeats), min_size=2, max_size=6), st.randoms(use_true_random=False))
def test_two_runs_drawn_from_the_same_repeats_agree_or_say_tie(samples, rnd):
    """Two runs whose repeats are each three draws from the same per-setting pool of six: the verdicts
    agree, or one of them calls it a tie (what disagreements() checks)."""
    def draw():
        return [run(f"b{i}", write=rnd.choices(w * 3, k=3), read=rnd.choices(r * 3, k=3))
                for i, (w, r) in enumerate(samples)]
    first, second = doc(draw()), doc(draw())
    for key in ("write", "read"):
        a, b = rec.verdicts(first)["cifar"][key], rec.verdicts(second)["cifar"][key]
        if not a.tie and not b.tie and a.winners != b.winners:
            assert rec.disagreements(first, second)


def test_disagreements_lists_only_clear_flips():
    a = doc([run("x", write=(0.01,) * 3), run("y", write=(0.05,) * 3)])
    b = doc([run("x", write=(0.05,) * 3), run("y", write=(0.01,) * 3)])
    assert rec.disagreements(a, b) == ["cifar write: x/none against y/none"]
    c = doc([run("x", write=(0.01, 0.02, 0.06)), run("y", write=(0.012, 0.02, 0.03))])
    assert rec.disagreements(a, c) == []


def test_each_dataset_is_handed_over_as_soon_as_it_is_measured(tmp_path):
    """compare shows a dataset's tables when it is done (the first table within seconds), not after the run."""
    from imgbench.present import terminal

    seen = []

    def on_dataset(results, name):
        seen.append((name, sorted({r["dataset"] for r in results["runs"]})))

    plan = compare.Plan([compare.builtin_dataset("cifar", [3]), compare.builtin_dataset("ct", [2])],
                        compare.settings_for(["npy", "lmdb"]), repeats=2, random_reads=2, workdir=tmp_path)
    final = compare.run(plan, on_dataset=on_dataset)
    assert seen == [("cifar", ["cifar"]), ("ct", ["cifar", "ct"])]
    assert final["config"]["raw_reference"] == ["npy"]

    from rich.console import Console

    printer = terminal.DatasetPrinter(console=Console(width=160, record=True, color_system=None))
    printer(final, "cifar")
    terminal.print_summary(final, console=printer.console, shown=printer.shown)
    text = printer.console.export_text()
    assert text.count("cifar: 3 images") == 1 and text.count("ct: 2 images") == 1 and text.count("Legend:") == 1


def test_the_saving_against_png_is_named_in_bytes_and_percent():
    runs = [run("lmdb", compression="png", allocated=1_000_000, read=(0.10,) * 3),
            run("lmdb", compression="zstd", allocated=700_000, read=(0.02,) * 3),
            run("lmdb", compression="none", allocated=2_000_000, read=(0.01,) * 3)]
    out = text(runs)
    assert "Smallest lossless against PNG: lmdb/zstd stores these images in 700.0 kB, 300.0 kB (30%) less than " \
           "lmdb/png (1.0 MB)." in out
    assert "Fastest-decoding smaller than PNG: lmdb/zstd reads all 5.0x faster than lmdb/png at 70% of its bytes." in out
    assert "against PNG" not in text(runs[1:])  # no PNG measured: nothing to compare with


def test_the_medical_codec_joins_the_default_compare_for_16bit_images_only(tmp_path):
    settings = compare.settings_for()
    assert [s.label for s in settings if s.only_16bit] == ["lmdb/htj2k"]
    plan = compare.Plan([compare.builtin_dataset("cifar", [3]), compare.builtin_dataset("ct", [2])],
                        [s for s in settings if s.backend == "lmdb"], repeats=1, random_reads=2, workdir=tmp_path,
                        parallel_workers=[1], parallel_repeats=1)
    done = []
    out = compare.run(plan, progress=lambda advance, text: done.append(advance))
    measured = {(r["dataset"], f"{r['backend']}/{r['compression']}") for r in out["runs"]}
    assert ("ct", "lmdb/htj2k") in measured and ("cifar", "lmdb/htj2k") not in measured
    parallel = {(r["dataset"], r["compression"]) for r in out["parallel_read"]["runs"]}
    assert ("ct", "htj2k") in parallel and ("cifar", "htj2k") not in parallel
    assert sum(done) == plan.steps()  # the progress bar's total counts only what is measured
