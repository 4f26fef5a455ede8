"""``imgbench compare --peers``: litdata, MDS and webdataset measured with their own writers and readers.

Each peer's rows must be exact (every image and label checked), carry bytes and file counts, and
be marked ``peer``; a missing package is a one-line note naming the extra; an inexact peer is
reported not exact; a bad name is a one-line error listing the known peers. Tiny on purpose:
a handful of images, one repeat (timings are not asserted).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from imgbench.cli import main
from imgbench.measure import compare, peers
from imgbench.measure.matrix import CompareError, Setting

pytestmark = pytest.mark.xdist_group("peers")


def _stub_torchvision(monkeypatch) -> None:
    """MDS imports torchvision only for its vision datasets (``streaming.vision``), never for MDSWriter or
    StreamingDataset. Where no working torchvision is installed (this CPU-only torch), a two-name stand-in
    lets ``import streaming`` succeed; a real torchvision is used when present."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    tv = types.ModuleType("torchvision")
    datasets_ = types.ModuleType("torchvision.datasets")
    datasets_.VisionDataset = type("VisionDataset", (), {})
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.to_tensor = lambda x: x
    for mod in (tv, datasets_, transforms, functional):
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    for name, mod in {"torchvision": tv, "torchvision.datasets": datasets_, "torchvision.transforms": transforms,
                      "torchvision.transforms.functional": functional}.items():
        monkeypatch.setitem(sys.modules, name, mod)


def _plan(dataset: str, n: int, chosen: list[str], **kw) -> compare.Plan:
    ds = compare.builtin_dataset(dataset, [n])
    return compare.Plan(datasets=[ds], settings=[Setting("npy", "none")], repeats=1, random_reads=3,
                        parallel_workers=[], peers=chosen, **kw)


def _peer_rows(results) -> dict[str, dict]:
    return {r["backend"]: r for r in results["runs"] if r.get("peer")}


@pytest.mark.parametrize("name", peers.known())
@pytest.mark.parametrize("dataset", ["cifar", "ct:64x64"])
def test_each_peer_gives_exact_rows_with_bytes_and_files(name, dataset, tmp_path, monkeypatch):
    if name == "mds":
        _stub_torchvision(monkeypatch)
    adapter, note = peers.load(name)
    if adapter is None:
        pytest.skip(note)
    results = compare.run(_plan(dataset, 6, [name], workdir=tmp_path))
    row = _peer_rows(results)[f"peer:{name}"]
    assert row["peer"] is True and row["status"] == "ok", row.get("reason")
    assert row["exact"], row["mismatches"]
    assert row["compression"] == "raw" and row["durability"]
    assert row["disk"]["files"] >= 1 and row["disk"]["allocated"] >= row["raw_bytes"] > 0
    assert row["stats"]["write_s"]["n"] == row["stats"]["read_s"]["n"] == 1
    assert row["derived"]["random_latency_us"] is not None  # wids is installed with the extra
    assert results["config"]["peers"] == [name] and "fsync" in results["method"]["peers"]
    # imgbench's own rows are measured beside it, in the same run
    assert [r["backend"] for r in results["runs"] if not r.get("peer")] == ["npy"]
    assert compare.all_exact(results)
    assert list(tmp_path.iterdir()) == []  # the work folder is cleaned up


@pytest.mark.parametrize("name", peers.known())
def test_missing_peer_package_is_a_one_line_note(name, tmp_path, monkeypatch):
    for package in peers.PEERS[name].requires:
        monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    results = compare.run(_plan("cifar", 3, [name], workdir=tmp_path))
    assert _peer_rows(results) == {}
    [note] = [n for n in results["notes"] if name in n]
    assert "\n" not in note and "skipped" in note and "pip install 'imgbench[peers]'" in note


def test_webdataset_without_wids_reads_at_random_na(tmp_path, monkeypatch):
    if peers.load("webdataset")[0] is None:
        pytest.skip("webdataset is not installed")
    monkeypatch.setitem(sys.modules, "wids", None)
    out = tmp_path / "report"
    results = compare.run(_plan("cifar", 4, ["webdataset"], workdir=tmp_path / "work"))
    row = _peer_rows(results)["peer:webdataset"]
    assert row["exact"] and row["stats"]["random_s"] is None and row["derived"]["random_latency_us"] is None
    assert any("random read n/a" in n and "wids" in n for n in results["notes"])
    from imgbench.present import report, terminal

    report.write(results, out)  # the report and the tables show n/a instead of failing
    assert "n/a" in (out / "report.html").read_text()
    assert "peer:webdataset" in (out / "report.html").read_text()
    terminal.print_summary(results, out_dir=out)


def test_a_peer_that_reads_other_pixels_is_reported_not_exact(tmp_path, monkeypatch):
    """Never hidden: a peer whose reader changes one pixel is a row with exact False and the reason."""
    store: dict = {}
    fake = types.ModuleType("fake_peer")
    fake.COMPRESSION, fake.DURABILITY = "raw", "in memory"

    def write(path, images, labels):
        path.mkdir()
        (path / "data").write_bytes(b"x")
        store["images"], store["labels"] = np.array(images), labels

    def read_all(path):
        got = store["images"].copy()
        got[0, 0, 0, 0] ^= 1
        return got, store["labels"]

    fake.write, fake.read_all, fake.open_random = write, read_all, lambda path: None
    monkeypatch.setitem(sys.modules, "fake_peer", fake)
    monkeypatch.setitem(peers.PEERS, "fake", peers.Peer("fake", "fake_peer", ()))
    results = compare.run(_plan("cifar", 3, ["fake"], workdir=tmp_path))
    row = _peer_rows(results)["peer:fake"]
    assert row["exact"] is False and "other values" in row["mismatches"][0]
    assert not compare.all_exact(results)


def test_unknown_peer_is_a_one_line_error_listing_the_known(tmp_path, capsys):
    with pytest.raises(CompareError, match="litdata, mds, webdataset"):
        compare.make_plan(datasets_=["cifar"], counts=["3"], peers=["lance"])
    assert main(["compare", "-q", "--out", str(tmp_path / "r"), "--peers", "litdata", "lance"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown peer 'lance'" in err and "litdata, mds, webdataset" in err
    assert not (tmp_path / "r" / "results.json").exists()


def test_cli_peers_end_to_end(tmp_path, capsys):
    """``imgbench compare --peers webdataset``: the peer's rows in results.json, the tables and the report."""
    if peers.load("webdataset")[0] is None:
        pytest.skip("webdataset is not installed")
    out = tmp_path / "r"
    code = main(["compare", "-q", "--datasets", "cifar", "--counts", "4", "--repeats", "1", "--backends", "npy",
                 "--random-reads", "2", "--parallel-workers", "0", "--peers", "webdataset", "--out", str(out)])
    assert code == 0
    assert "peer:webdataset" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [r["backend"] for r in results["runs"]] == ["npy", "peer:webdataset"]
    assert "peer:webdataset" in (out / "report.html").read_text()


def test_a_peer_whose_dependency_is_missing_says_which(monkeypatch):
    """Installed but broken (streaming without torchvision) is not "not installed": the note names the cause."""
    if importlib.util.find_spec("litdata") is None:
        pytest.skip("litdata is not installed")
    for name in [m for m in sys.modules if m == "litdata" or m.startswith("litdata.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ["lightning_utilities", *(m for m in sys.modules if m.startswith("lightning_utilities."))]:
        monkeypatch.setitem(sys.modules, name, None)  # a dependency of litdata, as if not installed
    adapter, note = peers.load("litdata")
    assert adapter is None and "fails to import" in note and "lightning_utilities" in note and "\n" not in note
