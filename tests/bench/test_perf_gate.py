"""The perf gate's verdicts, on a recorded run and synthetic variants of it (fast: no timing).

``tests/perf/recorded_run.json`` is a real ``bash .ci/perf`` run on the 2-core
CI-like machine, trimmed to the fields the gate reads. Each test derives the
situation it needs from it: the same run again, a uniformly slower machine, one
backend slower, a benchmark gone or added.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.perf import gate

HERE = Path(__file__).resolve().parents[1] / "perf"
RECORDED = HERE / "recorded_run.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


@pytest.fixture
def baseline(recorded: dict[str, Any], tmp_path: Path) -> Path:
    """A baseline made from the recorded run by the gate's own ``baseline`` command."""
    run = tmp_path / "baseline-run.json"
    run.write_text(json.dumps(recorded))
    path = tmp_path / "baseline.json"
    assert gate.main(["baseline", str(run), "-o", str(path)]) == 0
    return path


def variant(recorded: dict[str, Any], scale: Callable[[dict[str, Any]], float]) -> dict[str, Any]:
    """A copy of the run with every statistic of each benchmark multiplied by ``scale(extra_info)``."""
    run = copy.deepcopy(recorded)
    for bench in run["benchmarks"]:
        factor = scale(bench["extra_info"])
        for name in ("min", "max", "mean", "median", "q1", "q3", "ld15iqr", "hd15iqr"):
            if name in bench["stats"]:
                bench["stats"][name] *= factor
    return run


def judge(tmp_path: Path, baseline: Path, *runs: dict[str, Any], threshold: float = 2.0) -> tuple[int, str]:
    paths = []
    for k, run in enumerate(runs):
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(run))
    return gate.check(paths, baseline, threshold)


VERDICTS = {"ok", "REGRESSED", "MISSING", "new", "faster", "tracked"}


def table(text: str) -> dict[str, list[str]]:
    """key -> [verdict, baseline ratio, ratio now, change] from the report's table."""
    rows = [line.split() for line in text.splitlines() if line.startswith("  ")]
    return {row[1]: [row[0], *row[2:]] for row in rows if row[0] in VERDICTS and "/" in row[1]}


def statuses(text: str) -> dict[str, str]:
    """key -> verdict from the report's table."""
    return {key: row[0] for key, row in table(text).items()}


def lmdb_keys(recorded: dict[str, Any]) -> set[str]:
    return {gate.bench_key(b["extra_info"]) for b in recorded["benchmarks"] if b["extra_info"]["backend"] == "lmdb"}


def test_recorded_run_covers_every_backend_and_operation(recorded: dict[str, Any]) -> None:
    infos = [b["extra_info"] for b in recorded["benchmarks"]]
    assert {i["backend"] for i in infos} >= {"raw", "disk", "hdf5", "lmdb"}
    assert {i["op"] for i in infos} == {"write", "read_all", "read_random"}
    assert {i["dataset"] for i in infos} == {"cifar", "ct"}


def test_unchanged_run_passes(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    status, text = judge(tmp_path, baseline, recorded)
    assert status == gate.EXIT_PASS
    assert set(statuses(text).values()) == {"ok", "tracked"}
    assert "PASS" in text.splitlines()[-1]


def test_uniformly_slower_machine_passes(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """(a) Everything 1.5x slower, the reference too: ratios are unchanged."""
    status, text = judge(tmp_path, baseline, variant(recorded, lambda info: 1.5))
    assert status == gate.EXIT_PASS, text
    assert set(statuses(text).values()) == {"ok", "tracked"}
    assert {row[-1] for row in table(text).values()} == {"1.00x"}


def test_slower_machine_with_noise_passes(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """1.5x slower plus up to 25% jitter either way per benchmark (deterministic): noise, not a regression."""
    jitter = [1.25, 0.8, 1.0, 1.2, 0.85]
    keys = sorted(gate.bench_key(b["extra_info"]) for b in recorded["benchmarks"])
    run = variant(recorded, lambda info: 1.5 * jitter[keys.index(gate.bench_key(info)) % len(jitter)])
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_PASS, text


def test_one_backend_three_times_slower_fails(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """(b) LMDB 3x slower on every operation: FAIL, naming each LMDB benchmark with old/new figures."""
    status, text = judge(tmp_path, baseline, variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0))
    assert status == gate.EXIT_FAIL
    table = statuses(text)
    regressed = {k for k, s in table.items() if s == "REGRESSED"}
    assert regressed == {k for k in lmdb_keys(recorded) if not gate.tracked(k)}
    assert table["write/ct/lmdb:none"] == "tracked"
    assert all(s in ("ok", "tracked") for k, s in table.items() if k not in regressed)
    expected = json.loads(baseline.read_text())["benchmarks"]
    for key in regressed:
        (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(f"{key} (")]
        old = expected[key]["ratio"]
        new = gate.ratios(recorded)[key].ratio * 3
        assert f"ratio to raw {old:.3g} -> {new:.3g} = 3.00x" in line
        assert gate.fmt_time(expected[key]["seconds"]) in line  # old time
        assert gate.fmt_time(expected[key]["seconds"] * 3) in line  # new time
        assert "over the 2x threshold" in line
        assert expected[key]["test"] in line  # the pytest id, to re-run it by hand
    assert text.splitlines()[-1].startswith(f"FAIL: {len(regressed)} benchmark(s): ")
    assert "lmdb" in text.splitlines()[-1]


def test_one_backend_slower_on_a_slower_machine_fails(
    recorded: dict[str, Any], baseline: Path, tmp_path: Path
) -> None:
    """Uniform 1.5x plus LMDB 3x on top: only LMDB is blamed."""
    run = variant(recorded, lambda info: 1.5 * (3.0 if info["backend"] == "lmdb" else 1.0))
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_FAIL
    assert {k for k, s in statuses(text).items() if s == "REGRESSED"} == {
        k for k in lmdb_keys(recorded) if not gate.tracked(k)
    }


def test_slower_reference_is_not_a_regression(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """A slower numpy makes every ratio smaller: pass, with a hint to refresh the baseline."""
    status, text = judge(tmp_path, baseline, variant(recorded, lambda info: 3.0 if info["backend"] == "raw" else 1.0))
    assert status == gate.EXIT_PASS
    assert "FASTER (note):" in text and gate.REGENERATE in text


def test_new_benchmark_warns_and_passes(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """(c) A benchmark with no baseline (a newly registered backend) is reported, not gated."""
    run = copy.deepcopy(recorded)
    template = next(b for b in run["benchmarks"] if b["extra_info"]["backend"] == "lmdb")
    new = copy.deepcopy(template)
    new["extra_info"].update(backend="zarr", compression="zstd")
    new["fullname"] = new["fullname"].replace("lmdb", "zarr")
    run["benchmarks"].append(new)
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_PASS
    key = gate.bench_key(new["extra_info"])
    assert statuses(text)[key] == "new"
    assert "NEW (warning only):" in text
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(f"{key} (")]
    assert "no baseline yet, not gated" in line and gate.REGENERATE in line


def test_missing_benchmark_fails(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """(c) A baselined benchmark that did not run fails: the gate must not silently lose coverage."""
    run = copy.deepcopy(recorded)
    gone = next(b for b in run["benchmarks"] if b["extra_info"]["backend"] == "hdf5")
    run["benchmarks"].remove(gone)
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_FAIL
    key = gate.bench_key(gone["extra_info"])
    assert statuses(text)[key] == "MISSING"
    assert [k for k, s in statuses(text).items() if s not in ("ok", "tracked")] == [key]
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(f"{key} (")]
    assert "in the baseline but this run did not measure it" in line
    assert gone["fullname"] in line and gate.REGENERATE in line
    assert text.splitlines()[-1] == f"FAIL: 1 benchmark(s): {key}"


def test_missing_reference_fails_its_whole_group(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """Without the reference nothing in its (op, dataset) group can be normalized: all MISSING."""
    run = copy.deepcopy(recorded)
    ref = next(b for b in run["benchmarks"] if b["extra_info"]["backend"] == "raw")
    run["benchmarks"].remove(ref)
    group = gate.group_of(gate.bench_key(ref["extra_info"]))
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_FAIL
    missing = {k for k, s in statuses(text).items() if s == "MISSING"}
    assert missing == {k for k in statuses(text) if gate.group_of(k) == group}
    assert len(missing) >= 2


def test_confirmation_run_clears_a_one_off_spike(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """With several runs the best ratio counts: slow once is noise, slow every time is a regression."""
    slow = variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0)
    assert judge(tmp_path, baseline, slow, recorded)[0] == gate.EXIT_PASS
    assert judge(tmp_path, baseline, slow, slow)[0] == gate.EXIT_FAIL


def test_rerun_file_lists_regressed_tests_and_their_references(
    recorded: dict[str, Any], baseline: Path, tmp_path: Path
) -> None:
    run = tmp_path / "slow.json"
    run.write_text(json.dumps(variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0)))
    rerun = tmp_path / "rerun.txt"
    status, _ = gate.check([run], baseline, 2.0, rerun)
    assert status == gate.EXIT_FAIL
    tests = rerun.read_text().split()
    want = {b["fullname"] for b in recorded["benchmarks"] if b["extra_info"]["backend"] in ("lmdb", "raw")
            and not gate.tracked(gate.bench_key(b["extra_info"]))}
    want -= {b["fullname"] for b in recorded["benchmarks"]  # write/ct/raw: its only gated member is tracked
             if gate.bench_key(b["extra_info"]) == "write/ct/raw"}
    assert set(tests) == want and len(tests) == len(want)


def test_cli_exit_status_and_report(recorded: dict[str, Any], baseline: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run.json"
    run.write_text(json.dumps(variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0)))
    assert gate.main(["check", str(run), "--baseline", str(baseline)]) == gate.EXIT_FAIL
    assert "REGRESSED" in capsys.readouterr().out
    # A stricter threshold than the change passes nothing; a looser one passes.
    assert gate.main(["check", str(run), "--baseline", str(baseline), "--threshold", "3.5"]) == gate.EXIT_PASS
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert gate.main(["check", str(bad), "--baseline", str(baseline)]) == gate.EXIT_ERROR
    assert "cannot read" in capsys.readouterr().err


def test_baseline_takes_the_median_of_runs(recorded: dict[str, Any], tmp_path: Path) -> None:
    runs = []
    for k, factor in enumerate((1.0, 5.0, 1.2)):  # one run with LMDB far off: the median ignores it
        runs.append(tmp_path / f"r{k}.json")
        runs[-1].write_text(json.dumps(variant(recorded, lambda info, f=factor: f if info["backend"] == "lmdb" else 1.0)))
    data = gate.make_baseline(runs)
    one = gate.ratios(recorded)
    for key, entry in data["benchmarks"].items():
        want = one[key].ratio * (1.2 if "/lmdb" in key else 1.0)
        assert entry["ratio"] == pytest.approx(want, rel=1e-3)
        assert entry["runs"] == 3
    assert data["generated_by"] == gate.REGENERATE and data["stat"] == gate.DEFAULT_STAT


def test_benchmarks_without_gate_labels_are_ignored(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    run = copy.deepcopy(recorded)
    run["benchmarks"].append({"name": "test_other", "fullname": "tests/x.py::test_other", "extra_info": {},
                              "stats": {"median": 1.0, "min": 1.0}})
    assert judge(tmp_path, baseline, run)[0] == gate.EXIT_PASS


def test_committed_baseline_is_generated_and_complete() -> None:
    """The committed baseline says how it was made, and every group has its reference."""
    data = json.loads(gate.DEFAULT_BASELINE.read_text())
    assert data["generated_by"] == gate.REGENERATE and data["runs"] >= 1
    keys = set(data["benchmarks"])
    assert keys and all(data["benchmarks"][k]["ratio"] > 0 for k in keys)
    assert all(f"{gate.group_of(k)}/{gate.REFERENCE}" in keys for k in keys)


def test_runs_timed_with_another_clock_are_refused(recorded: dict[str, Any], tmp_path: Path, capsys) -> None:
    """CPU-time ratios and wall-time ratios differ: mixing them would be a silent false verdict."""
    cpu = copy.deepcopy(recorded)
    for bench in cpu["benchmarks"]:
        bench["options"] = {"timer": "time.process_time"}
    wall = copy.deepcopy(recorded)
    for bench in wall["benchmarks"]:
        bench["options"] = {"timer": "time.perf_counter"}
    (tmp_path / "cpu.json").write_text(json.dumps(cpu))
    (tmp_path / "wall.json").write_text(json.dumps(wall))
    base = tmp_path / "baseline.json"
    assert gate.main(["baseline", str(tmp_path / "cpu.json"), "-o", str(base)]) == gate.EXIT_PASS
    assert json.loads(base.read_text())["timer"] == "time.process_time"
    assert gate.main(["check", str(tmp_path / "wall.json"), "--baseline", str(base)]) == gate.EXIT_ERROR
    assert "not comparable" in capsys.readouterr().err
    assert gate.main(["check", str(tmp_path / "cpu.json"), "--baseline", str(base)]) == gate.EXIT_PASS


def test_ct_writes_are_tracked_not_gated(recorded: dict[str, Any], baseline: Path, tmp_path: Path) -> None:
    """Issue 16: write/ct/zarr:none at 2.44x and write/ct/npy:none at 2.25x failed unchanged code on
    another machine of the same kind. CT writes are reported (with their change) but never fail."""
    run = variant(recorded, lambda info: 2.5 if (info["op"], info["dataset"]) == ("write", "ct")
                  and info["backend"] != "raw" else 1.0)
    status, text = judge(tmp_path, baseline, run)
    assert status == gate.EXIT_PASS, text
    rows = table(text)
    assert rows["write/ct/hdf5:none"][0] == "tracked" and rows["write/ct/hdf5:none"][-1] == "2.50x"
    assert "TRACKED (reported, never fails)" in text


def write_runs(tmp_path: Path, name: str, *runs: dict[str, Any]) -> list[str]:
    paths = []
    for k, run in enumerate(runs):
        paths.append(str(tmp_path / f"{name}{k}.json"))
        Path(paths[-1]).write_text(json.dumps(run))
    return paths


def test_ab_passes_when_this_machine_differs_from_the_baselines(
    recorded: dict[str, Any], baseline: Path, tmp_path: Path, capsys
) -> None:
    """A ratio 2.5x its baseline on this machine for base and head code alike: the machine, not the code."""
    machine = variant(recorded, lambda info: 2.5 if info["backend"] == "hdf5" else 1.0)
    assert judge(tmp_path, baseline, machine)[0] == gate.EXIT_FAIL  # check alone would cry wolf
    base = write_runs(tmp_path, "base", machine, machine)
    head = write_runs(tmp_path, "head", machine, machine)
    assert gate.main(["ab", "--base", *base, "--head", *head, "--baseline", str(baseline)]) == gate.EXIT_PASS
    assert "PASS" in capsys.readouterr().out.splitlines()[-1]


def test_ab_fails_when_the_code_is_three_times_slower(
    recorded: dict[str, Any], baseline: Path, tmp_path: Path, capsys
) -> None:
    slow = variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0)
    base = write_runs(tmp_path, "base", recorded, recorded)
    head = write_runs(tmp_path, "head", slow, slow)
    assert gate.main(["ab", "--base", *base, "--head", *head, "--baseline", str(baseline)]) == gate.EXIT_FAIL
    out = capsys.readouterr().out
    assert "read_all/cifar/lmdb:none" in out.splitlines()[-1] and "3.00x" in out
    assert "write/ct/lmdb:none" not in out.splitlines()[-1]  # tracked


def test_ab_judges_a_backend_the_base_lacks_against_the_baseline(
    recorded: dict[str, Any], baseline: Path, tmp_path: Path, capsys
) -> None:
    """A backend newer than the baseline's commit cannot be paired: the committed baseline judges it."""
    no_lmdb = copy.deepcopy(recorded)
    no_lmdb["benchmarks"] = [b for b in no_lmdb["benchmarks"] if b["extra_info"]["backend"] != "lmdb"]
    slow = variant(recorded, lambda info: 3.0 if info["backend"] == "lmdb" else 1.0)
    base = write_runs(tmp_path, "base", no_lmdb)
    assert gate.main(["ab", "--base", *base, "--head", *write_runs(tmp_path, "ok", recorded),
                      "--context", *write_runs(tmp_path, "ctx", slow),
                      "--baseline", str(baseline)]) == gate.EXIT_PASS
    assert gate.main(["ab", "--base", *base, "--head", *write_runs(tmp_path, "slow", slow),
                      "--baseline", str(baseline)]) == gate.EXIT_FAIL
    assert "against the committed baseline" in capsys.readouterr().out


def test_ab_judges_only_the_rerun_benchmarks(recorded: dict[str, Any], baseline: Path, tmp_path: Path, capsys) -> None:
    """The job's first full run is context: it may lower a head ratio but adds nothing to judge."""
    flagged = copy.deepcopy(recorded)
    flagged["benchmarks"] = [b for b in flagged["benchmarks"] if b["extra_info"]["backend"] in ("lmdb", "raw")
                             and b["extra_info"]["op"] == "read_all"]
    assert gate.main(["ab", "--base", *write_runs(tmp_path, "b", flagged), "--head", *write_runs(tmp_path, "h", flagged),
                      "--context", *write_runs(tmp_path, "c", recorded), "--baseline", str(baseline),
                      "--base-label", "abc123"]) == gate.EXIT_PASS
    out = capsys.readouterr().out
    assert "abc123" in out and "hdf5" not in out and "not in the base runs" not in out
