"""A hostile S3 endpoint: stalled, slow, dropping or dying servers (tests/remote/badserver.py, in front of moto).

Each store is uploaded to moto, opened through the proxy while it forwards,
then the proxy turns bad. Every failure must be one RemoteAccessError within a
generous bound of the configured deadline -- never a hang, never a raw botocore
exception, never "damaged". Bounds are on hangs (the readers used to wait 200 s
to over 480 s per object), not on speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.cli import main
from tests.remote.badserver import BadServer
from tests.remote.test_s3 import KEY, SECRET, _sharded, _write, s3, server  # noqa: F401 - fixtures

DEADLINE = 5  # seconds: the configured deadline
GENEROUS = 30  # seconds: the deadline where the test is not about it
BOUND = 45  # seconds: a failure must come within this (the deadline plus generous slack for a loaded machine)

STORES = ["zarr", "tar", "hdf5", "sharded-tar", "sharded-hdf5", "sharded-zarr"]


@pytest.fixture
def bad(s3):
    proxy = BadServer(s3.endpoint, delay=40)
    yield proxy
    proxy.close()


def _upload(tmp_path, s3, kind: str) -> tuple[str, list[np.ndarray]]:
    if kind.startswith("sharded-"):
        path, images, _ = _sharded(tmp_path, kind.removeprefix("sharded-"), "none" if "tar" in kind else None)
    else:
        path, images, _ = _write(tmp_path, kind, "none" if kind == "tar" else None, ragged=False)
    return s3.upload(path, path.name), images


def _open(url: str, kind: str, bad: BadServer, **options):
    """The store at ``url`` read through the proxy; hdf5 with a small read-ahead so reads keep going to the server."""
    if "hdf5" in kind:
        options.setdefault("block_size", 1024)
    return imgbench.open(url, storage_options={"endpoint_url": bad.endpoint, "key": KEY, "secret": SECRET}, **options)


def _fails_in_time(fn) -> imgbench.RemoteAccessError:
    start = time.monotonic()
    with pytest.raises(imgbench.ImgbenchError) as info:
        fn()
    took = time.monotonic() - start
    assert took < BOUND, f"took {took:.0f} s"
    assert type(info.value) is imgbench.RemoteAccessError, repr(info.value)
    assert "\n" not in str(info.value)
    return info.value


# ------------------------------------------------------------------ item 4: the deadline
@pytest.mark.parametrize("mode", ["stall", "delay", "drop"])
@pytest.mark.parametrize("kind", ["zarr", "tar", "hdf5", "sharded-tar"])
def test_bad_server_gives_remote_access_error_within_the_deadline(tmp_path, s3, bad, kind, mode):
    if mode != "stall" and kind in ("tar", "sharded-tar"):
        pytest.skip("tar shares its requests with zarr and hdf5; stall covers it")
    url, images = _upload(tmp_path, s3, kind)
    with _open(url, kind, bad, remote_timeout=DEADLINE) as s:
        assert s[0].tobytes() == images[0].tobytes()
        bad.set(mode)
        err = _fails_in_time(lambda: s.read_many(list(range(len(images)))[::-1]))
    if mode != "drop":  # a dropped connection may be named as such, or as no answer in time
        assert f"deadline of {DEADLINE} s" in str(err) and "remote_timeout=" in str(err)
    assert url.split("/")[3] in str(err) and bad.endpoint in str(err)


def test_opening_against_a_stalled_server_uses_the_variable(s3, bad, monkeypatch):
    bad.set("stall")
    monkeypatch.setenv("AWS_ENDPOINT_URL", bad.endpoint)
    monkeypatch.setenv("IMGBENCH_REMOTE_TIMEOUT", str(DEADLINE))
    err = _fails_in_time(lambda: imgbench.open(f"s3://{s3.bucket}/x.zarr"))
    assert "IMGBENCH_REMOTE_TIMEOUT" in str(err) and f"{DEADLINE} s" in str(err)


def test_cli_remote_timeout_against_a_stalled_server(tmp_path, s3, bad):
    url, _ = _upload(tmp_path, s3, "zarr")
    bad.set("stall")
    env = {"PATH": "", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": bad.endpoint, "AWS_ACCESS_KEY_ID": KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET, **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    for cmd in ("info", "verify"):
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "imgbench.cli", cmd, url, "--remote-timeout", str(DEADLINE)],
                             env=env, capture_output=True, text=True, timeout=120)
        assert time.monotonic() - start < BOUND + 10  # an interpreter start on top
        assert out.returncode == 2, out.stdout + out.stderr
        assert out.stderr.startswith("imgbench: error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert f"deadline of {DEADLINE} s" in out.stderr and "damaged" not in out.stdout


@pytest.mark.parametrize("bad_value", [0, -1, float("nan"), "soon", True])
def test_bad_remote_timeout_is_refused(s3, bad_value):
    with pytest.raises(imgbench.UnsupportedError, match="remote_timeout must be a positive number of seconds"):
        imgbench.open(f"s3://{s3.bucket}/x.zarr", remote_timeout=bad_value)


def test_remote_timeout_on_a_local_path_is_refused(tmp_path):
    path, _, _ = _write(tmp_path, "zarr")
    with pytest.raises(imgbench.UnsupportedError, match="remote_timeout apply to URLs"):
        imgbench.open(path, remote_timeout=5)


def test_bad_variable_is_refused(s3, monkeypatch):
    monkeypatch.setenv("IMGBENCH_REMOTE_TIMEOUT", "a minute")
    with pytest.raises(imgbench.UnsupportedError, match="IMGBENCH_REMOTE_TIMEOUT must be a number of seconds"):
        imgbench.open(f"s3://{s3.bucket}/x.zarr")


# ------------------------------------------------------------------ item 5: a server dying mid-read
@pytest.mark.parametrize("kind", STORES)
def test_server_dying_mid_read_is_remote_access_error_not_damage(tmp_path, s3, bad, kind, capsys, monkeypatch):
    # a dead server refuses connections at once: the deadline is not what this tests, and a generous one keeps
    # the reads before the death from timing out on a loaded machine
    url, images = _upload(tmp_path, s3, kind)
    with _open(url, kind, bad, remote_timeout=GENEROUS) as s:
        assert s[0].tobytes() == images[0].tobytes()
        bad.set("dead")
        _fails_in_time(lambda: s.read_many(list(range(len(images)))[::-1]))
        _fails_in_time(lambda: s[len(images) - 1])
    # verify (in process, and as the CLI runs it: isolated in a child) says the network failed, not damage
    monkeypatch.setenv("AWS_ENDPOINT_URL", bad.endpoint)
    _fails_in_time(lambda: verify(url, remote_timeout=GENEROUS))
    if kind != "hdf5":  # the child process verify reads in is the same for all; hdf5 used to report damage
        return
    assert main(["verify", url, "--remote-timeout", str(GENEROUS)]) == 2
    captured = capsys.readouterr()
    assert "damaged" not in captured.out and len(captured.err.strip().splitlines()) == 1, captured


# ------------------------------------------------------------------ item 6: zero-byte objects are damage
EMPTIED = [  # (store, object inside it emptied; "" = the store's one object)
    ("zarr", "zarr.json"), ("zarr", "images/zarr.json"), ("tar", "imgbench-tar.index"), ("tar", "imgbench-tar.json"),
    ("tar", "shard-000000.tar"), ("hdf5", ""), ("sharded-tar", "imgbench-shards.json"),
    ("sharded-tar", "shard-00001/imgbench-tar.index"), ("sharded-zarr", "shard-00001.zarr/zarr.json"),
    ("sharded-hdf5", "shard-00001.h5"),
]


def _read_all(where) -> None:
    with imgbench.open(where) as s:
        s.read_many()
        s.labels  # noqa: B018
        s.checksums  # noqa: B018


@pytest.mark.parametrize("kind,name", EMPTIED, ids=lambda v: v or "object")
def test_zero_byte_object_is_corrupt_store_error_as_locally(tmp_path, s3, kind, name):
    """S3 answers a byte range of an empty object with 416 "range not satisfiable", which was blamed on the
    endpoint and credentials; emptied locally the same file is damage, and so it must be remotely."""
    url, _ = _upload(tmp_path, s3, kind)
    local = tmp_path / url.rstrip("/").rpartition("/")[2]
    (local / name if name else local).write_bytes(b"")
    with pytest.raises(imgbench.ImgbenchError) as here:
        _read_all(local)
    s3.fs.pipe_file(s3.key(url, name), b"")
    with pytest.raises(imgbench.ImgbenchError) as there:
        _read_all(url)
    assert isinstance(here.value, imgbench.CorruptStoreError), repr(here.value)
    assert isinstance(there.value, imgbench.CorruptStoreError), repr(there.value)
    assert "AWS_" not in str(there.value)
