"""CI check: the committed asv results keep up with the code (issue 16).

Fails (exit 1) when

* the newest committed result (any machine folder under ``results/``) is more than
  ``--max-behind`` (15) first-parent commits behind HEAD. The lead merges branches with
  ``--no-ff``, so a merged branch counts as one commit: the count is
  ``git rev-list --first-parent --count HEAD ^RESULT``, the commits of HEAD's first-parent
  line that do not contain the result's commit; or
* ``results/benchmarks.json`` lacks a benchmark the suite in ``benchmarks/`` defines
  (discovered with asv's own discovery, ``asv_runner.discovery``), so the dashboard would
  not show it.

Shallow or rebased clones: when no result's commit is in the local history, a shallow
clone with an ``origin`` remote is deepened (``git fetch --deepen``) until one is or the
history is complete; failing that, the count falls back to dates: first-parent commits
whose author date (what asv records as a result's ``date``) is newer than the newest
result. A shallow clone too short to decide either way is an error (exit 2) that says
how to deepen it. Exit status: 0 pass, 1 stale or incomplete, 2 cannot decide.

    python .ci/results_fresh.py [--max-behind 15] [--results results] [--benchmarks benchmarks]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MAX_BEHIND = 15


class Undecided(Exception):
    """The clone's history cannot say how far behind the results are."""


def git(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise Undecided(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip() if proc.returncode == 0 else ""


def result_commits(results: Path) -> dict[str, int]:
    """commit hash -> asv date (ms, the commit's author date) of every committed result file."""
    found: dict[str, int] = {}
    for path in results.glob("*/*.json"):
        if path.name == "machine.json":
            continue
        try:
            data = json.loads(path.read_text())
            found[str(data["commit_hash"])] = int(data.get("date") or 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def present(commit: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True).returncode == 0


def shallow() -> bool:
    return git("rev-parse", "--is-shallow-repository", check=False) == "true"


def in_history(commit: str) -> bool:
    """The commit is here and an ancestor of HEAD (not rebased away, not beyond a shallow boundary)."""
    return present(commit) and subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "HEAD"], capture_output=True
    ).returncode == 0


def behind_by_graph(commits: dict[str, int]) -> int | None:
    """Fewest first-parent commits of HEAD not containing a result's commit; None if none is here."""
    counts = []
    for commit in commits:
        if in_history(commit):
            counts.append(int(git("rev-list", "--first-parent", "--count", "HEAD", f"^{commit}")))
    return min(counts) if counts else None


def behind_by_date(newest_ms: int, max_behind: int) -> int:
    """First-parent commits of HEAD authored after the newest result (rebased result commits)."""
    dates = [int(d) for d in git("log", "--first-parent", "--format=%at", "HEAD").split()]
    newer = sum(1 for d in dates if d * 1000 > newest_ms)
    if newer == len(dates) and shallow() and newer <= max_behind:
        raise Undecided(
            f"this shallow clone holds only {len(dates)} commits, all newer than the newest result: "
            f"deepen it (git fetch --deepen={max_behind + 1}) or clone without --depth"
        )
    return newer


def staleness(results: Path, max_behind: int) -> tuple[int, str]:
    commits = result_commits(results)
    if not commits:
        return max_behind + 1, f"no committed results under {results}/"
    behind = behind_by_graph(commits)
    while behind is None and shallow() and git("remote", "get-url", "origin", check=False):
        git("fetch", "-q", f"--deepen={max_behind + 1}", "origin")
        behind = behind_by_graph(commits)
        if not shallow():
            break
    how = "first-parent commits"
    absent = [c for c in commits if not in_history(c)]
    if absent:  # rebased away, or beyond a shallow boundary: count by the newest such result's date
        by_date = behind_by_date(max(commits[c] for c in absent), max_behind) if behind is None or behind > max_behind \
            else None
        if by_date is not None and (behind is None or by_date < behind):
            behind = by_date
            how = "first-parent commits authored after the newest result (its commit is not in this history)"
    if behind is None:
        behind = max_behind + 1
    return behind, how


def suite_benchmarks(root: Path) -> set[str]:
    from asv_runner.discovery import disc_benchmarks, update_sys_path

    update_sys_path(str(root.resolve()))  # import this suite's package, as asv does
    return {b.name for b in disc_benchmarks(str(root.resolve()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-behind", type=int, default=MAX_BEHIND)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"))
    args = parser.parse_args(argv)
    problems = []
    try:
        behind, how = staleness(args.results, args.max_behind)
    except Undecided as exc:
        print(f"results check: cannot decide: {exc}", file=sys.stderr)
        return 2
    if behind > args.max_behind:
        problems.append(
            f"the newest committed asv result is {behind} {how} behind HEAD (at most {args.max_behind}): "
            "run the fast suite for your head and commit results/ (docs/development.md, 'Before submitting')"
        )
    listed = set(json.loads((args.results / "benchmarks.json").read_text())) - {"version"}
    missing = sorted(suite_benchmarks(args.benchmarks) - listed)
    if missing:
        problems.append(
            f"{args.results}/benchmarks.json lacks {len(missing)} benchmark(s) the suite defines "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): an asv run writes it; commit it"
        )
    for problem in problems:
        print(f"results check: FAIL: {problem}")
    if not problems:
        print(f"results check: PASS: newest result {behind} {how} behind HEAD; "
              f"results/benchmarks.json lists every benchmark of the suite")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
