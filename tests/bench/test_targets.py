"""``imgbench targets``: the measuring machinery on a tiny configuration (structure only, never timings)."""

from __future__ import annotations

import copy
import json
import statistics

import pytest

from imgbench.cli import main
from imgbench.measure import targets

#: one worker runs this module: the targets are measured once (module fixture)
pytestmark = pytest.mark.xdist_group("targets")

#: every gated target of the table in docs/design.md: (row key, dataset)
GATED = {
    (f"{b}_{op}", d) for b in ("hdf5", "lmdb") for op in ("read_all", "write") for d in ("cifar", "cifar-large", "ct")
} | {("disk_png_read_all", d) for d in ("cifar", "cifar-large", "ct")} | {(f"{b}_random_loop", "cifar") for b in ("hdf5", "lmdb")}


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    """One tiny run with cold figures, counting progress steps."""
    where = tmp_path_factory.mktemp("targets")
    steps = []
    cfg = targets.make_config(tiny=True, cold=True, workdir=where)
    result = targets.run(cfg, lambda advance, text: steps.append(advance), command=["imgbench", "targets"])
    result["_steps"], result["_expected_steps"], result["_where"] = sum(steps), targets.total_steps(cfg), where
    return result


def test_every_target_row_is_present_and_exact(doc):
    warm = {(r["key"], r["dataset"]) for r in doc["rows"] if r["cache"] in ("warm", "-") and r["threshold"] is not None}
    assert warm == GATED
    keys = [r["key"] for r in doc["rows"]]
    assert {"hdf5_random_many", "lmdb_random_many"} <= set(keys)
    assert all(r["exact"] for r in doc["rows"])  # the warm-up read back exactly what was written
    assert all(len(r["imgbench_s"]) == len(r["reference_s"]) == 2 for r in doc["rows"])


def test_thresholds_are_designs(doc):
    by_key = {r["key"]: (r["kind"], r["threshold"]) for r in doc["rows"] if r["cache"] != "cold"}
    assert by_key["hdf5_read_all"] == ("ratio", 1.3) and by_key["lmdb_read_all"] == ("ratio", 3.0)
    assert by_key["hdf5_write"] == ("ratio", 1.5) and by_key["lmdb_write"] == ("ratio", 10.0)
    assert by_key["disk_png_read_all"] == ("speedup", 1.6)
    assert by_key["hdf5_random_loop"] == by_key["lmdb_random_loop"] == ("us", 20.0)
    assert by_key["hdf5_random_many"] == ("us", None)  # reported beside the loop, not gated


def test_cold_rows_are_reported_not_gated(doc):
    cold = [r for r in doc["rows"] if r["cache"] == "cold"]
    assert {r["key"] for r in cold} == {
        "hdf5_read_all", "lmdb_read_all", "disk_png_read_all",
        "hdf5_random_loop", "hdf5_random_many", "lmdb_random_loop", "lmdb_random_many",
    }
    assert all(r["threshold"] is None and r["verdict"] == "info" for r in cold)


def test_figures_come_from_the_two_medians(doc):
    for r in doc["rows"]:
        mine, ref = statistics.median(r["imgbench_s"]), statistics.median(r["reference_s"])
        assert r["imgbench_median"] == mine and r["reference_median"] == ref
        assert r["ratio"] == pytest.approx(mine / ref)
        want = {"ratio": mine / ref, "speedup": ref / mine, "us": mine / r["images"] * 1e6}[r["kind"]]
        assert r["figure"] == pytest.approx(want)
        if r["threshold"] is not None:
            ok = r["figure"] >= r["threshold"] if r["kind"] == "speedup" else r["figure"] <= r["threshold"]
            assert r["verdict"] == ("PASS" if ok else "FAIL")


def test_progress_total_matches_and_temp_dir_is_removed(doc):
    assert doc["_steps"] == doc["_expected_steps"]
    assert list(doc["_where"].iterdir()) == []


def test_header_says_where_and_how(doc):
    text = targets.format_table(doc)
    assert str(doc["_where"]) in text and doc["filesystem"] and doc["filesystem"] in text
    assert "fsync" in text and "Pillow" in text and "medians of 2 interleaved repeats" in text
    assert text.rstrip().splitlines()[-1].split(" of ")[1].startswith("17 targets")


def test_markdown_renders_one_line_per_row(doc):
    text = targets.format_table(doc, markdown=True)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| " + " | ".join(targets.COLUMNS) + " |"
    assert set(table[1].replace("|", "").split()) <= {"---", "---:"}
    assert len(table) == 2 + len(doc["rows"])
    assert all(line.count("|") == len(targets.COLUMNS) + 1 for line in table)
    assert "µs/image" in text and "x faster" in text


def _all_passing(doc):
    passing = copy.deepcopy(doc)
    for r in passing["rows"]:
        r["imgbench_s"], r["reference_s"] = [1.0, 1.0], [2.0, 2.0]  # ratio 0.5, 2x faster, ...
        r["images"] = 10**6  # 1 µs per image
    return passing


def test_exit_code_is_1_when_any_target_fails(doc):
    passing = _all_passing(doc)
    assert targets.exit_code(passing) == 0
    failing = copy.deepcopy(passing)
    row = next(r for r in failing["rows"] if r["key"] == "hdf5_read_all")
    row["imgbench_s"] = [3.0, 3.0]  # 1.5x raw > 1.3x
    assert targets.exit_code(failing) == 1
    assert "failing: hdf5 none read all (cifar)" in targets.format_table(failing)
    assert "**FAIL**" in targets.format_table(failing, markdown=True)
    wrong = copy.deepcopy(passing)
    wrong["rows"][0]["exact"] = False
    assert targets.exit_code(wrong) == 1
    # a stale verdict in the JSON is never trusted: it is recomputed from the samples
    stale = copy.deepcopy(failing)
    for r in stale["rows"]:
        r["verdict"] = "PASS"
    assert targets.exit_code(stale) == 1
    assert targets.exit_code({**passing, "rows": []}) == 1


def test_speedup_and_latency_verdicts():
    common = dict(key="k", backend="disk", compression="png", dataset="cifar", shape="32x32x3 uint8",
                  images=1000, cache="warm", reference="r")
    slow = targets.Row(operation="read_all", kind="speedup", threshold=1.6,
                       imgbench_s=[1.0, 1.0, 9.0], reference_s=[1.5, 1.5, 0.1], **common)
    assert slow.figure == pytest.approx(1.5) and slow.verdict == "FAIL"
    fast = targets.Row(operation="random_loop", kind="us", threshold=20.0, imgbench_s=[0.015], reference_s=[0.01],
                       **common)
    assert fast.figure == pytest.approx(15.0) and fast.verdict == "PASS"


def test_cli_prints_table_writes_json_and_exits_by_verdict(tmp_path, capsys):
    out = tmp_path / "t.json"
    code = main(["targets", "--tiny", "--repeat", "1", "--dir", str(tmp_path / "w"), "--json", str(out),
                 "--markdown", "-q"])
    printed = capsys.readouterr()
    data = json.loads(out.read_text())
    assert code == targets.exit_code(data) and code in (0, 1)
    assert "| operation |" in printed.out and printed.err == ""
    assert data["command"][:2] == ["imgbench", "targets"] and data["config"]["repeat"] == 1
    assert len(data["rows"]) == 19  # 3 data sets x (2 read all + 2 write + disk png) + 2 x (loop, read_many)


def test_cli_writes_the_table_into_the_readme_between_its_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\nbefore\n{targets.README_BEGIN}\nstale figures\n{targets.README_END}\nafter\n")
    code = main(["targets", "--tiny", "--repeat", "1", "--dir", str(tmp_path / "w"), "-q", "--readme", str(readme)])
    table = capsys.readouterr().out
    text = readme.read_text()
    assert code in (0, 1) and "stale figures" not in text
    assert text.startswith(f"# t\nbefore\n{targets.README_BEGIN}\n") and text.endswith(f"{targets.README_END}\nafter\n")
    assert "`imgbench targets --tiny --repeat 1" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 19 and rows[2].startswith("| hdf5 none read all") and "hdf5 none read all" in table
    # the next run replaces the table, never appends a second one
    assert main(["targets", "--tiny", "--repeat", "1", "--dir", str(tmp_path / "w"), "-q", "--readme", str(readme)]) in (0, 1)
    assert readme.read_text().count(targets.README_BEGIN) == 1 and len(
        [line for line in readme.read_text().splitlines() if line.startswith("| ")]) == 2 + 19


def test_cli_readme_without_markers_fails_before_measuring(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert main(["targets", "--tiny", "-q", "--dir", str(tmp_path / "w"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "no targets table markers" in err and len(err.strip().splitlines()) == 1 and readme.read_text() == "# no markers\n"
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


@pytest.mark.parametrize("argv, message", [
    (["--repeat", "0"], "repeat must be at least 1"),
    (["--dir", "FILE"], "is a file"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    assert main(["targets", "--tiny", "-q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
