"""The CI check that committed asv results keep up with the code (.ci/results_fresh.py, issue 16).

Each test builds a small git repository (a one-benchmark suite, a results folder whose
result names one of its commits) and runs the check in it as CI does, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / ".ci" / "results_fresh.py"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
SUITE = "class Suite:\n    def time_one(self):\n        pass\n\n    def track_two(self):\n        return 1\n"
NAMES = ["bench_x.Suite.time_one", "bench_x.Suite.track_two"]


def git(repo: Path, *args: str, when: int | None = None) -> str:
    env = dict(os.environ, **GIT_ENV)
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{when} +0000"
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    def __init__(self, path: Path):
        self.path = path
        self.when = 1_700_000_000
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        (path / "benchmarks").mkdir()
        (path / "benchmarks" / "__init__.py").write_text("")
        (path / "benchmarks" / "bench_x.py").write_text(SUITE)
        (path / "results" / "m").mkdir(parents=True)
        (path / "results" / "m" / "machine.json").write_text("{}")
        self.listing(NAMES)
        self.commit("suite")

    def commit(self, message: str = "c") -> str:
        self.when += 60
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message, when=self.when)
        return git(self.path, "rev-parse", "HEAD")

    def commits(self, n: int) -> None:
        for k in range(n):
            self.commit(f"c{k}")

    def listing(self, names: list[str]) -> None:
        (self.path / "results" / "benchmarks.json").write_text(json.dumps({**{n: {} for n in names}, "version": 2}))

    def result_for(self, commit: str) -> None:
        date = int(git(self.path, "log", "-1", "--format=%at", commit)) * 1000
        (self.path / "results" / "m" / f"{commit[:8]}-env.json").write_text(
            json.dumps({"commit_hash": commit, "date": date, "results": {}}))


def check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *args], cwd=repo, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_passes_within_fifteen_commits_and_fails_beyond(repo: Repo) -> None:
    measured = git(repo.path, "rev-parse", "HEAD")
    repo.commits(14)
    repo.result_for(measured)
    repo.commit("results")  # the results commit itself: 15 behind
    proc = check(repo.path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "15 first-parent commits behind" in proc.stdout
    repo.commit("one more")
    proc = check(repo.path)
    assert proc.returncode == 1 and "16 first-parent commits behind HEAD (at most 15)" in proc.stdout


def test_a_merged_branch_counts_as_one(repo: Repo) -> None:
    repo.result_for(git(repo.path, "rev-parse", "HEAD"))
    repo.commit("results")
    git(repo.path, "checkout", "-q", "-b", "feature")
    repo.commits(30)
    git(repo.path, "checkout", "-q", "main")
    git(repo.path, "merge", "-q", "--no-ff", "-m", "merge feature", "feature", when=repo.when + 60)
    proc = check(repo.path)
    assert proc.returncode == 0 and "2 first-parent commits behind" in proc.stdout, proc.stdout


def test_missing_benchmark_fails(repo: Repo) -> None:
    repo.result_for(git(repo.path, "rev-parse", "HEAD"))
    repo.listing(NAMES[:1])
    repo.commit("results")
    proc = check(repo.path)
    assert proc.returncode == 1 and "lacks 1 benchmark(s) the suite defines (bench_x.Suite.track_two)" in proc.stdout


def test_shallow_clone_deepens_from_its_remote(repo: Repo, tmp_path: Path) -> None:
    repo.result_for(git(repo.path, "rev-parse", "HEAD"))
    repo.commits(10)
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{repo.path}", str(clone))
    proc = check(clone)
    assert proc.returncode == 0 and "10 first-parent commits behind" in proc.stdout, proc.stdout + proc.stderr
    repo.commits(10)
    git(clone, "fetch", "-q", "--depth", "2", "origin", "main")
    git(clone, "reset", "-q", "--hard", "FETCH_HEAD")
    proc = check(clone)
    assert proc.returncode == 1 and "20 first-parent commits behind" in proc.stdout, proc.stdout + proc.stderr


def test_shallow_clone_without_remote_counts_by_date_or_says_it_cannot(repo: Repo, tmp_path: Path) -> None:
    repo.result_for(git(repo.path, "rev-parse", "HEAD"))
    repo.commits(20)
    deep = tmp_path / "deep"
    git(tmp_path, "clone", "-q", "--depth", "18", f"file://{repo.path}", str(deep))
    git(deep, "remote", "remove", "origin")
    proc = check(deep)  # the result's commit is cut off, but 18 newer commits are visible: stale
    assert proc.returncode == 1 and "authored after the newest result" in proc.stdout, proc.stdout + proc.stderr
    short = tmp_path / "short"
    git(tmp_path, "clone", "-q", "--depth", "3", f"file://{repo.path}", str(short))
    git(short, "remote", "remove", "origin")
    proc = check(short)
    assert proc.returncode == 2 and "git fetch --deepen=16" in proc.stderr


def test_this_repository_passes_and_fails_once_its_results_are_sixteen_commits_old(tmp_path: Path) -> None:
    """The judged case: a fresh clone of this repository passes; sixteen more commits make it fail."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(ROOT), str(clone))
    proc = check(clone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    behind = int(proc.stdout.split("newest result ")[1].split()[0])
    for k in range(16 - behind):
        git(clone, "commit", "-q", "--allow-empty", "-m", f"later {k}")
    proc = check(clone)
    assert proc.returncode == 1 and "is 16 first-parent commits" in proc.stdout and "(at most 15)" in proc.stdout, proc.stdout


def test_results_of_a_rebased_commit_count_by_date(repo: Repo) -> None:
    """After `git rebase` the measured commit is no longer in HEAD's history (though still in the
    object store): the count falls back to commits authored after it, not to an older result."""
    old = git(repo.path, "rev-parse", "HEAD")
    repo.result_for(old)
    repo.commits(20)
    repo.commit("results")
    measured = repo.commit("feature")
    repo.result_for(measured)
    git(repo.path, "commit", "-q", "--amend", "--allow-empty", "-m", "feature, reworded")  # the measured hash leaves history
    repo.commit("results")
    proc = check(repo.path)
    assert proc.returncode == 0 and "authored after the newest result" in proc.stdout, proc.stdout
