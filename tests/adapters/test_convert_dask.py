"""``imgbench convert --workers/--scheduler``: sharded datasets written in parallel on Dask.

Real PNG and TIFF files in class sub-folders; the result must be the same dataset
(same images, order, labels, shard layout) whatever the worker count, and the same
images as a plain conversion. A LocalCluster of processes costs seconds, so this
module starts two (the CLI's for --workers 2 and --workers 1) plus one in a killed
subprocess; the --scheduler tests share one cluster of threads.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgbench
from imgbench import cluster, sharded
from imgbench.adapters import convert as conv
from imgbench.cli import main

#: one worker runs this module: one LocalCluster and one converted reference (module fixtures)
pytestmark = pytest.mark.xdist_group("dask")

CLASSES = ("cats", "dogs", "eels")
N_FILES = 300


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A few hundred lossless images: PNG (8/16-bit, gray/RGB/RGBA) and TIFF (one multi-page), in class folders."""
    root = tmp_path_factory.mktemp("src") / "images"
    rng = np.random.default_rng(2024)
    for i in range(N_FILES):
        folder = root / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        h, w = 8 + i % 7, 9 + i % 5
        if i % 10 == 0:
            pages = rng.integers(0, 65535, (2 if i == 0 else 1, h, w), dtype=np.uint16)
            tifffile.imwrite(folder / f"{i:04d}.tif", pages if i == 0 else pages[0], photometric="minisblack")
        else:
            shape = [(h, w), (h, w, 3), (h, w, 4)][i % 3]
            dtype = np.uint16 if i % 4 == 1 else np.uint8
            image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
            (folder / f"{i:04d}.png").write_bytes(imagecodecs.png_encode(image))
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


def dump(path):
    """Everything a reader sees, exactly: images (dtype, shape, bytes) in order, labels, attrs, checksums."""
    with imgbench.open(path) as s:
        return {
            "images": [(im.dtype.str, im.shape, im.tobytes()) for im in s],
            "labels": None if s.labels is None else s.labels.tolist(),
            "classes": s.attrs.get("classes"),
            "checksums": s.checksums.tolist(),
            "backend": s.backend,
        }


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """A plain (not sharded) conversion of the folder."""
    dst = tmp_path_factory.mktemp("ref") / "plain.lmdb"
    conv.convert(folder, dst)
    return dump(dst)


@pytest.fixture(scope="module")
def scheduler():
    """An existing cluster for --scheduler: workers as threads of this process (starts in a fraction of a
    second; the process clusters are the ones --workers starts)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as local:
        yield local.scheduler_address


def test_reference_has_every_file(reference):
    assert len(reference["images"]) == N_FILES + 1  # the multi-page TIFF holds two
    assert reference["classes"] == list(CLASSES)


def test_workers_2_equals_workers_1_sequential_and_plain(folder, reference, tmp_path, capsys):
    """The acceptance test: bit-identical, same order and labels, whatever the worker count."""
    pytest.importorskip("distributed")
    out = {}
    for name, extra in [("w2", ["--workers", "2"]), ("w1", ["--workers", "1"]), ("seq", [])]:
        dst = tmp_path / name
        assert main(["convert", str(folder), str(dst), "--backend", "lmdb", "--images-per-shard", "37", "-q",
                     *extra]) == 0
        printed = capsys.readouterr().out
        assert f"wrote {N_FILES + 1} images, 3 classes" in printed and "9 shards" in printed
        out[name] = dump(dst)
        assert out[name] == reference
        assert sharded.detect(dst) and [p for p in os.listdir(tmp_path) if p.startswith(".")] == []
    m = {name: json.loads((tmp_path / name / sharded.MANIFEST).read_text()) for name in out}
    assert m["w2"]["shards"] == m["w1"]["shards"] == m["seq"]["shards"]  # names, counts, digests
    assert [e["count"] for e in m["w2"]["shards"]] == [38] + [37] * 7 + [4]  # 37 files each; a 2-page TIFF first
    assert m["w2"]["limit"] == {"images": 37} and m["w2"]["attrs"]["classes"] == list(CLASSES)
    assert main(["verify", str(tmp_path / "w2"), "-q"]) == 0


def test_scheduler_address_runs_on_an_existing_cluster(folder, reference, scheduler, tmp_path, capsys):
    dst = tmp_path / "out.zarr"
    assert main(["convert", str(folder), str(dst), "--shards", "5", "--scheduler", scheduler, "-q"]) == 0
    assert "5 shards" in capsys.readouterr().out
    got = dump(dst)
    assert got["backend"] == "zarr"
    assert {k: v for k, v in got.items() if k != "backend"} == {k: v for k, v in reference.items() if k != "backend"}


def test_store_source_converts_on_dask(folder, reference, scheduler, tmp_path):
    src = tmp_path / "src.h5"
    conv.convert(folder, src)
    done = conv.convert(src, tmp_path / "out", backend="npy", images_per_shard=50, scheduler=scheduler)
    assert done.shards == 7 and done.images == N_FILES + 1
    got = dump(tmp_path / "out")
    assert got["images"] == reference["images"] and got["labels"] == reference["labels"]
    with pytest.raises(imgbench.UnsupportedError, match="--images-per-shard or --shards"):
        conv.convert(src, tmp_path / "bytes", backend="npy", bytes_per_shard=1 << 20, scheduler=scheduler)


def test_failing_task_aborts_with_one_line_and_leaves_nothing(folder, scheduler, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a", "b"):
        (bad / name).mkdir()
        for i in range(6):
            (bad / name / f"{i}.png").write_bytes(imagecodecs.png_encode(np.full((4, 4), i, np.uint8)))
    (bad / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    dst = tmp_path / "out"
    assert main(["convert", str(bad), str(dst), "--backend", "lmdb", "--images-per-shard", "2",
                 "--scheduler", scheduler, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "3.png" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not dst.exists() and [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--workers", "0"], "positive"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--images-per-shard", "0"], "positive"),
        (["--images-per-shard", "3", "--shards", "2"], "one shard limit"),
        (["--bytes-per-shard", "lots"], "not a size"),
    ],
)
def test_bad_options_are_one_line(folder, tmp_path, capsys, args, expect):
    try:
        code = main(["convert", str(folder), str(tmp_path / "o.lmdb"), "-q", *args])
    except SystemExit as exc:  # argparse rejects before main's handler
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code != 0 and expect in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.lmdb").exists()


def test_missing_dask_is_a_clear_error(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(imgbench.UnsupportedError, match=r"pip install 'imgbench\[dask\]'"):
        conv.convert(folder, tmp_path / "o", backend="lmdb", workers=2)
    assert main(["convert", str(folder), str(tmp_path / "o"), "--backend", "lmdb", "--workers", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgbench: error:") and "imgbench[dask]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # without --workers nothing needs Dask: a sharded conversion runs in this process
    assert conv.convert(folder, tmp_path / "o", backend="npy", shards=3).shards == 3


def test_tasks_carry_only_their_slice_and_retries_do_not_duplicate(folder, reference, tmp_path, monkeypatch):
    """Each task is its own slice (memory per worker does not grow with the dataset); running every
    task twice, as retries would, leaves each shard once."""
    seen = []

    def fake_run(fn, tasks, count, *, workers=None, scheduler=None, retries=2, done=None, name=""):
        results = []
        for i, task in enumerate(tasks):
            seen.append(task)
            blob = pickle.dumps(task)
            fn(pickle.loads(blob))  # a first attempt...
            results.append(fn(pickle.loads(blob)))  # ...and its retry
            done(i, results[-1])
        assert len(results) == count
        return results

    monkeypatch.setattr(cluster, "run", fake_run)
    monkeypatch.setattr(cluster, "require", lambda: None)
    ticks = []
    done = conv.convert(folder, tmp_path / "o", backend="lmdb", images_per_shard=20, workers=4,
                        progress=ticks.append, total=ticks.append)
    assert done.images == N_FILES + 1 and done.shards == 15
    assert ticks[0] == N_FILES and sum(ticks[1:]) == N_FILES
    assert all(len(t["files"]) <= 20 for t in seen)
    assert max(len(pickle.dumps(t)) for t in seen) < 20 * 200
    assert dump(tmp_path / "o") == reference


def test_sigkill_of_the_cli_mid_conversion_leaves_no_dataset(folder, tmp_path):
    pytest.importorskip("distributed")
    dst = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgbench.cli", "convert", str(folder), str(dst), "--backend", "lmdb",
         "--images-per-shard", "1", "--workers", "2", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        temp = None
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.imgbench-tmp-")]
            if temps and any(q.name.startswith("shard-") for q in temps[0].iterdir()):
                temp = temps[0]
                break
            time.sleep(0.01)
        assert temp is not None, f"the conversion never started writing shards: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)  # the CLI process only: its Dask workers live on for now
        proc.wait(timeout=60)
        assert not (temp / sharded.MANIFEST).exists(), "killed after its manifest: not mid-way"
        with pytest.raises(imgbench.StoreNotFoundError):
            imgbench.open(dst)
        for entry in tmp_path.iterdir():
            with pytest.raises(imgbench.ImgbenchError):
                imgbench.open(entry)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the cluster it started (same session)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
    time.sleep(0.5)
    # the next conversion is not blocked by what the dead one left, and removes its temporary
    assert conv.convert(folder, dst, backend="npy", images_per_shard=100).shards == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_worker_killed_while_the_local_cluster_starts_is_one_line(folder, tmp_path):
    """Each worker process is SIGKILLed as it starts (a Dask preload): LocalCluster raised a 40-line
    "RuntimeError: Nanny failed to start." traceback; now one line saying what happened and what to do."""
    pytest.importorskip("distributed")
    die = tmp_path / "die_on_start.py"
    die.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    # (PYTHONWARNINGS: distributed warns when another test's cluster holds port 8787; not this test's concern)
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(die)]), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-m", "imgbench.cli", "convert", str(folder), str(tmp_path / "out"), "--backend", "zarr",
         "--images-per-shard", "50", "--workers", "2", "-q"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith("imgbench: error: the local Dask cluster of 2 worker processes did not start")
    assert "--workers" in lines[0]
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["die_on_start.py"]


def test_parse_size():
    assert conv.parse_size("256M") == 256 << 20
    assert conv.parse_size("1.5 GiB") == 3 << 29
    assert conv.parse_size("4096") == 4096
    for bad in ("", "M", "-1", "0", "1X"):
        with pytest.raises(imgbench.UnsupportedError):
            conv.parse_size(bad)


def test_cluster_run_preserves_order_and_reports_completion(scheduler):
    finished = []
    results = cluster.run(_square, (i for i in range(25)), 25, scheduler=scheduler,
                          done=lambda i, r: finished.append(i))
    assert results == [i * i for i in range(25)] and sorted(finished) == list(range(25))
    with pytest.raises(imgbench.ImgbenchError, match="ZeroDivisionError"):
        cluster.run(_inverse, [1, 0, 2], 3, scheduler=scheduler, retries=0)


def _square(x):
    return x * x


def _inverse(x):
    return 1 / x


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    distributed = pytest.importorskip("distributed")

    def refuse(*args, **kwargs):
        raise OSError("Timed out trying to connect to tcp://10.255.255.1:8786 after 15 s")

    monkeypatch.setattr(distributed, "Client", refuse)
    with pytest.raises(imgbench.ImgbenchError, match="cannot reach the Dask scheduler at tcp://10.255.255.1:8786"):
        cluster.run(_square, [1], 1, scheduler="tcp://10.255.255.1:8786")
