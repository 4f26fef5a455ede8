"""benchmarks/bench_peers.py: the asv module measures what is installed and skips the rest cleanly.

Run in process as asv would (setup, track_*, teardown) at the smoke size; asv skips a benchmark
whose setup raises NotImplementedError, and calls teardown after it too.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_peers(monkeypatch):
    monkeypatch.setenv("IMGBENCH_ASV_SMOKE", "1")
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("benchmarks.bench_peers", None)
    return importlib.import_module("benchmarks.bench_peers")


def _run(cls, system):
    bench = cls()
    try:
        bench.setup(system)
    except NotImplementedError as exc:
        bench.teardown(system)
        return str(exc)
    try:
        return {name: getattr(bench, name)(system) for name in dir(bench) if name.startswith("track_")}
    finally:
        bench.teardown(system)


def test_bench_peers_measures_installed_peers_and_imgbench(bench_peers):
    got = _run(bench_peers.Peers, "imgbench:lmdb")
    assert set(got) == {"track_write_images_per_s", "track_read_all_images_per_s"} and min(got.values()) > 0
    if importlib.util.find_spec("webdataset") is not None:
        assert _run(bench_peers.Peers, "peer:webdataset")["track_read_all_images_per_s"] > 0


def test_bench_peers_skips_a_missing_peer(bench_peers, monkeypatch):
    monkeypatch.setitem(sys.modules, "litdata", None)
    for cls in (bench_peers.Peers, bench_peers.PeersRandom):
        note = _run(cls, "peer:litdata")
        assert isinstance(note, str) and "imgbench[peers]" in note


def test_bench_peers_random_read_skips_without_wids(bench_peers, monkeypatch):
    if importlib.util.find_spec("webdataset") is None:
        pytest.skip("webdataset is not installed")
    monkeypatch.setitem(sys.modules, "wids", None)
    assert "no random-access reader" in _run(bench_peers.PeersRandom, "peer:webdataset")
