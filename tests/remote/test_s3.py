"""Reading stores from an S3-compatible server: moto in server mode on 127.0.0.1, real HTTP.

Stores are written locally with imgbench.open(..., "w"), uploaded with s3fs
``put(recursive=True)`` as a user would, then read through ``s3://`` URLs. No
client is patched; all traffic stays on loopback.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import multiprocessing as mp
import os
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

import imgbench
from imgbench import remote, sharded
from imgbench.sharded import manifest as sharded_manifest
from imgbench.sharded import store as sharded_store
from imgbench.adapters.integrity import verify
from imgbench.cli import main

moto_server = pytest.importorskip("moto.server", reason="S3 tests need moto[server]: pip install 'imgbench[test]'")
pytest.importorskip("flask", reason="moto's server mode needs flask: pip install 'moto[server]'")
s3fs = pytest.importorskip("s3fs", reason="S3 tests need s3fs: pip install 'imgbench[s3]'")

KEY, SECRET = "testing", "testing"
READERS = [("zarr", "none"), ("zarr", "zstd"), ("tar", "png"), ("tar", "none"), ("hdf5", "none"), ("hdf5", "gzip"),
           ("hdf5", "zstd"), ("tar", "jpegls"), ("tar", "htj2k"), ("tar", "jpegxl"), ("tar", "lerc")]


@pytest.fixture(scope="module")
def server():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request in failure reports
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    yield f"http://{host}:{port}"
    srv.stop()


class S3:
    def __init__(self, fs, bucket: str, endpoint: str):
        self.fs, self.bucket, self.endpoint = fs, bucket, endpoint

    def upload(self, local, name: str) -> str:
        """Upload a local store (directory or file) as a user would; its s3:// URL."""
        self.fs.put(str(local), f"{self.bucket}/{name}", recursive=True)
        return f"s3://{self.bucket}/{name}"

    def key(self, url: str, name: str = "") -> str:
        return url[len("s3://"):].rstrip("/") + (f"/{name}" if name else "")


def _aws_env(monkeypatch, endpoint: str | None) -> None:
    """Exactly what a user sets: the endpoint and fake credentials; nothing from ~/.aws."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    if endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3(server, monkeypatch, request):
    _aws_env(monkeypatch, server)
    fs = s3fs.S3FileSystem(endpoint_url=server, key=KEY, secret=SECRET, skip_instance_cache=True)
    name = request.node.name.lower()  # one bucket per test: readable start, a hash to keep long ids apart
    bucket = (re.sub(r"[^a-z0-9-]+", "-", name).strip("-")[:40].strip("-")
              + f"-{hashlib.sha1(name.encode()).hexdigest()[:8]}-{os.getpid()}")
    fs.mkdir(bucket)
    return S3(fs, bucket, server)


def _images(n: int = 40, ragged: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(7)
    images = list(rng.integers(0, 256, (n, 12, 10, 3), dtype=np.uint8))
    if ragged:  # a tail of other shapes and dtypes: the mixed/ragged layouts
        images += [rng.integers(0, 65536, (9, 7), dtype=np.uint16), rng.integers(0, 256, (5, 6, 1), dtype=np.uint8)]
    labels = rng.integers(-5, 100, len(images))
    return images, labels


def _write(tmp_path, backend: str, compression: str | None = None, ragged: bool = True, name: str = "store"):
    path = tmp_path / {"hdf5": f"{name}.h5", "zarr": f"{name}.zarr", "lmdb": f"{name}.lmdb"}.get(backend, name)
    images, labels = _images(ragged=ragged)
    with imgbench.open(path, "w", backend=backend, compression=compression) as s:
        s.extend(images, labels=labels)
        s.attrs["modality"] = "photo"
        s.attrs["nested"] = {"k": [1, 2]}
    return path, images, labels


def _as_new_user(tmp_path, s3, argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``argv`` in an environment holding only PATH, HOME and the three AWS variables a user sets."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AWS_ENDPOINT_URL": s3.endpoint,
           "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("ragged", [False, True], ids=["uniform", "mixed"])
@pytest.mark.parametrize("cfg", READERS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_store_uploaded_reads_back_exactly(tmp_path, s3, cfg, ragged):
    backend, compression = cfg
    path, images, labels = _write(tmp_path, backend, compression, ragged)
    with imgbench.open(path) as local:
        sums = local.checksums
    url = s3.upload(path, path.name)
    with imgbench.open(url, verify=True) as s:
        assert (s.backend, s.compression, len(s)) == (backend, compression, len(images))
        assert s.path == url and url in repr(s)
        for i, image in enumerate(images):
            assert _same(s[i], image), i
        assert _same(s[-1], images[-1])
        assert s.labels.tolist() == labels.tolist()
        assert s.attrs.to_dict() == {"modality": "photo", "nested": {"k": [1, 2]}}
        assert s.checksums.tolist() == sums.tolist()
        order = [7, 3, len(images) - 1, 3, 0, -2, 12]
        got = s.read_many(order)
        for k, i in enumerate(order):
            assert _same(got[k], images[i])
        everything = s.read_many()
        assert all(_same(everything[i], images[i]) for i in range(len(images)))
        assert all(_same(a, b) for a, b in zip(s[2:9], images[2:9]))
        with pytest.raises(IndexError):
            s[len(images)]


def test_new_user_with_only_the_three_variables(tmp_path, s3):
    """The acceptance check, in a fresh interpreter whose environment holds nothing else AWS."""
    path, images, labels = _write(tmp_path, "zarr", "zstd")
    url = s3.upload(path, "x.zarr")
    script = (
        "import sys, numpy as np, imgbench\n"
        "s = imgbench.open(sys.argv[1])\n"
        "print(len(s), s.backend, s.compression, int(s.labels.sum()), int(np.asarray(s[0]).sum()))\n"
    )
    out = _as_new_user(tmp_path, s3, [sys.executable, "-c", script, url])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len(images)), "zarr", "zstd", str(int(labels.sum())), str(int(images[0].sum()))]


@pytest.mark.parametrize("backend", ["zarr", "tar", "hdf5"])
def test_storage_options_give_the_endpoint(tmp_path, s3, monkeypatch, backend):
    path, images, _ = _write(tmp_path, backend)
    url = s3.upload(path, path.name)
    _aws_env(monkeypatch, None)  # no endpoint, no credentials in the environment
    opts = {"endpoint_url": s3.endpoint, "key": KEY, "secret": SECRET}
    with imgbench.open(url, storage_options=opts) as s:
        assert _same(s[5], images[5]) and len(s) == len(images)
        # pickled with its storage_options: a spawned worker reads with no environment either
        with mp.get_context("spawn").Pool(1) as pool:
            assert pool.map(_read_pickled, [pickle.dumps(s)]) == [images[5].tobytes()]


def test_storage_options_on_a_local_path_are_refused(tmp_path):
    path, _, _ = _write(tmp_path, "zarr")
    with pytest.raises(imgbench.UnsupportedError, match="storage_options"):
        imgbench.open(path, storage_options={"anon": True})


def _read_pickled(blob: bytes) -> bytes:
    return pickle.loads(blob)[5].tobytes()


def _read_in_fork(store, queue) -> None:
    try:
        queue.put(store.read_many([5, 1]).tobytes())
    except Exception as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


def _forked_child_reads(store) -> bytes:
    """What a forked child reads from ``store`` (see _read_in_fork), after it exited cleanly."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_fork, args=(store, queue))
    child.start()
    got = queue.get(timeout=120)
    child.join(60)
    assert child.exitcode == 0
    return got


@pytest.mark.parametrize("backend", ["zarr", "tar", "hdf5"])
def test_remote_store_in_forked_and_spawned_workers(tmp_path, s3, backend):
    path, images, _ = _write(tmp_path, backend, ragged=False)
    url = s3.upload(path, path.name)
    with imgbench.open(url) as s:
        assert _same(s[0], images[0])  # the parent has used its connections before forking
        assert _forked_child_reads(s) == np.stack([images[5], images[1]]).tobytes()
        assert _same(s[3], images[3])  # the parent's handles still work
        with mp.get_context("spawn").Pool(2) as pool:
            assert pool.map(_read_pickled, [pickle.dumps(s)] * 2) == [images[5].tobytes()] * 2


# ------------------------------------------------------------------ refusals and errors
@pytest.mark.parametrize("backend", ["lmdb", "disk", "npy"])
def test_local_only_backends_say_so(tmp_path, s3, backend):
    path, _, _ = _write(tmp_path, backend, "none" if backend != "lmdb" else None, ragged=False)
    url = s3.upload(path, path.name)
    with pytest.raises(imgbench.UnsupportedError, match=rf"{backend} stores cannot be read from an object store.*local"):
        imgbench.open(url)


@pytest.mark.parametrize("mode", ["w", "x", "a"])
def test_write_modes_on_urls_are_refused(tmp_path, s3, mode):
    path, _, _ = _write(tmp_path, "zarr")
    url = s3.upload(path, "x.zarr")
    before = s3.fs.find(s3.bucket)
    with pytest.raises(imgbench.UnsupportedError, match="read-only.*upload"):
        imgbench.open(url, mode)
    with pytest.raises(imgbench.UnsupportedError, match="read-only"):
        imgbench.open(f"s3://{s3.bucket}/new.zarr", mode, backend="zarr")
    s3.fs.invalidate_cache()
    assert s3.fs.find(s3.bucket) == before


def test_missing_key_or_bucket_is_store_not_found(s3):
    for url in (f"s3://{s3.bucket}/nothing.zarr", "s3://no-such-bucket-here/x.zarr"):
        with pytest.raises(imgbench.StoreNotFoundError, match="no store at") as info:
            imgbench.open(url)
        assert isinstance(info.value, FileNotFoundError)


def test_something_else_at_the_url_is_not_a_store(tmp_path, s3):
    (tmp_path / "notes.txt").write_text("hello")
    url = s3.upload(tmp_path / "notes.txt", "notes.txt")
    with pytest.raises(imgbench.CorruptStoreError, match="no imgbench backend recognises"):
        imgbench.open(url)
    with pytest.raises(imgbench.CorruptStoreError, match="no imgbench backend recognises"):
        imgbench.open(f"s3://{s3.bucket}")  # a prefix holding things, none of them a store


def _flip(s3, key: str, at: int) -> None:
    data = bytearray(s3.fs.cat_file(key))
    data[at % len(data)] ^= 0xFF
    s3.fs.pipe_file(key, bytes(data))


def test_damaged_zarr_objects_are_corrupt_store_errors(tmp_path, s3):
    path, images, _ = _write(tmp_path, "zarr", "zstd", ragged=False)
    url = s3.upload(path, "x.zarr")
    shard = next(k for k in s3.fs.find(s3.key(url)) if "/images/c." in k)
    _flip(s3, shard, 40)
    with imgbench.open(url) as s:
        with pytest.raises(imgbench.CorruptStoreError):
            s.read_many()
    s3.fs.rm(shard)  # a missing chunk is an error, never zeros
    with imgbench.open(url) as s, pytest.raises(imgbench.CorruptStoreError, match="missing"):
        s[0]
    s3.fs.pipe_file(s3.key(url, "zarr.json"), b'{"zarr_format": 3, "node_type": "group", "attributes": {"imgbench": 1}}')
    with pytest.raises(imgbench.CorruptStoreError):
        imgbench.open(url)


def test_damaged_tar_objects_are_corrupt_store_errors(tmp_path, s3):
    path, images, _ = _write(tmp_path, "tar", "none")
    url = s3.upload(path, "t")
    shard = s3.key(url, "shard-000000.tar")
    data = s3.fs.cat_file(shard)
    s3.fs.pipe_file(shard, data[:-4096])  # truncated
    with imgbench.open(url) as s, pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        s.read_many()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x55
    s3.fs.pipe_file(shard, bytes(flipped))  # same size, one image's pixels changed
    report = verify(url)
    assert len(report.damaged) == 1 and not report.problems
    index = s3.key(url, "imgbench-tar.index")
    s3.fs.pipe_file(index, s3.fs.cat_file(index)[:100])
    with pytest.raises(imgbench.CorruptStoreError, match="truncated"):
        imgbench.open(url)
    s3.fs.rm(index)
    with pytest.raises(imgbench.CorruptStoreError, match="missing"):
        imgbench.open(url)


def test_damaged_hdf5_object_is_corrupt_store_error(tmp_path, s3):
    path, images, _ = _write(tmp_path, "hdf5", "gzip", ragged=False)
    url = s3.upload(path, "h.h5")
    data = path.read_bytes()
    s3.fs.pipe_file(s3.key(url), data[: len(data) // 2])
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(url) as s:
            s.read_many()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_one_line_naming_it(s3):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    opts = {"endpoint_url": endpoint, "config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(imgbench.ImgbenchError) as info:
        imgbench.open(f"s3://{s3.bucket}/x.zarr", storage_options=opts)
    message = str(info.value)
    assert not isinstance(info.value, imgbench.CorruptStoreError)
    assert endpoint in message and "AWS_ENDPOINT_URL" in message and "\n" not in message


def test_missing_credentials_name_the_variables(tmp_path, s3, monkeypatch):
    path, _, _ = _write(tmp_path, "zarr")
    url = s3.upload(path, "x.zarr")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(imgbench.ImgbenchError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") as info:
        imgbench.open(url, storage_options={"skip_instance_cache": True})
    assert s3.endpoint in str(info.value)


def test_missing_s3fs_names_the_extra(tmp_path):
    script = (
        "import sys; sys.modules['s3fs'] = None\n"
        "import imgbench\n"
        "try:\n    imgbench.open('s3://bucket/x.zarr')\n"
        "except imgbench.UnsupportedError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pip install 'imgbench[s3]'" in out.stdout, out.stdout + out.stderr


def test_core_import_does_not_load_fsspec_or_s3fs():
    script = "import sys, imgbench; print(sorted({'fsspec', 's3fs', 'botocore'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------ command line
def test_cli_info_and_verify_on_urls(tmp_path, s3, capsys):
    path, images, _ = _write(tmp_path, "zarr", "zstd")
    url = s3.upload(path, "x.zarr")
    assert main(["info", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "zarr" and info["images"] == len(images) and info["path"] == url
    assert info["disk"]["files"] == len(s3.fs.find(s3.key(url))) and info["disk"]["apparent"] > 0
    assert main(["info", url]) == 0
    assert "zarr" in capsys.readouterr().out
    assert main(["verify", url, "-q"]) == 0
    assert f"ok: {len(images)} images" in capsys.readouterr().out

    tar, _, _ = _write(tmp_path, "tar", "png", name="t")
    turl = s3.upload(tar, "t")
    shard = s3.key(turl, "shard-000000.tar")
    data = bytearray(s3.fs.cat_file(shard))
    data[512 + 100] ^= 0xFF  # inside the first PNG member (its data starts after one 512-byte header)
    s3.fs.pipe_file(shard, bytes(data))
    assert main(["verify", turl, "-q"]) == 1
    assert "damaged image" in capsys.readouterr().out

    for cmd in ("info", "verify"):
        assert main([cmd, f"s3://{s3.bucket}/nothing"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imgbench: error: no store at") and len(err.splitlines()) == 1
    lmdb, _, _ = _write(tmp_path, "lmdb", ragged=False)
    lurl = s3.upload(lmdb, lmdb.name)
    assert main(["verify", lurl]) == 2
    err = capsys.readouterr().err.strip()
    assert "lmdb stores cannot be read from an object store" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ sharded datasets
SHARDED = [("zarr", "zstd", False), ("zarr", "none", True), ("tar", "png", True), ("hdf5", "gzip", False)]


def _sharded(tmp_path, backend: str, compression: str | None = None, mixed: bool = False, name: str = "ds"):
    """30 labelled images in shards of 7 (the last short), written locally; ``mixed``: from image 14 on,
    other shapes and dtypes (later shards ragged, reads across shards give lists)."""
    rng = np.random.default_rng(11)
    images = []
    for i in range(30):
        if mixed and i >= 14:
            dtype = np.uint16 if i % 2 else np.uint8
            shape = [(9, 7), (5, 6, 1), (8, 8, 4)][i % 3]
            images.append(rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True))
        else:
            images.append(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    labels = rng.integers(-3, 50, len(images))
    path = tmp_path / name
    with imgbench.open(path, "w", backend=backend, compression=compression, images_per_shard=7) as s:
        s.extend(images, labels=labels)
        s.attrs["source"] = "test"
    return path, images, labels


def _digests(images) -> list[str]:
    """One digest per image covering dtype, shape and every byte."""
    return [hashlib.sha256(f"{im.dtype.str}{im.shape}".encode() + im.tobytes()).hexdigest() for im in images]


def _fingerprint(url: str) -> dict:
    """Everything a reader of ``url`` sees, as JSON-able digests (run here and, as source, in a new user's
    interpreter): every image's dtype, shape and bytes in order, a cross-shard read_many, labels, attrs."""
    with imgbench.open(url, verify=True) as s:
        n = len(s)
        return {
            "backend": s.backend, "compression": s.compression, "images": n,
            "shards": getattr(s, "shards", None),
            "all": _digests(s.read_many()), "one_by_one": _digests(s[i] for i in range(n)),
            "shuffled": _digests(s.read_many([(7 * i + 3) % n for i in range(n)][::-1])),
            "labels": None if s.labels is None else s.labels.tolist(), "attrs": s.attrs.to_dict(),
            "checksums": s.checksums.tolist(),
        }


def _fingerprint_as_new_user(tmp_path, s3, url: str) -> dict:
    script = "\n".join(["import hashlib, json, sys", "import imgbench", inspect.getsource(_digests),
                        inspect.getsource(_fingerprint), "print(json.dumps(_fingerprint(sys.argv[1])))"])
    out = _as_new_user(tmp_path, s3, [sys.executable, "-c", script, url])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _cli_as_new_user(tmp_path, s3, *args: str) -> subprocess.CompletedProcess:
    """The installed ``imgbench`` console script, in a new user's environment."""
    exe = os.path.join(os.path.dirname(sys.executable), "imgbench")
    argv = [exe, *args] if os.path.exists(exe) else [sys.executable, "-c", "from imgbench.cli import main; "
                                                      "raise SystemExit(main())", *args]
    return _as_new_user(tmp_path, s3, argv)


@pytest.mark.parametrize("cfg", SHARDED, ids=lambda c: f"{c[0]}-{c[1]}-{'mixed' if c[2] else 'uniform'}")
def test_sharded_dataset_uploaded_reads_back_exactly(tmp_path, s3, cfg, monkeypatch):
    backend, compression, mixed = cfg
    path, images, labels = _sharded(tmp_path, backend, compression, mixed)
    with imgbench.open(path) as local:
        sums = local.checksums.tolist()
    url = s3.upload(path, "ds")
    monkeypatch.setattr(sharded_store, "MAX_OPEN_SHARDS", 2)  # the reader's LRU of open shards, as locally
    order = [29, 0, 13, 7, 21, -1, 6, 14, 28, 0, 22]  # across shards, back and forth
    with imgbench.open(url, verify=True) as s:
        assert isinstance(s, sharded.RemoteShardedStore)
        assert (s.backend, s.compression, len(s), s.shards) == (backend, compression, 30, 5)
        assert s.path == url and url in repr(s)
        assert _digests(s[i] for i in range(30)) == _digests(images)
        assert len(s._open) <= 2
        got = s.read_many(order)
        assert isinstance(got, list) == mixed
        assert _digests(got) == _digests(images[i] for i in order)
        assert _digests(s.read_many()) == _digests(images)
        assert _digests(s[5:26:4]) == _digests(images[5:26:4])
        assert s.labels.tolist() == labels.tolist() and s.checksums.tolist() == sums
        assert s.attrs.to_dict() == {"source": "test"}
        with pytest.raises(IndexError):
            s[30]
    with imgbench.open(url + "/", verify=True) as s:  # the prefix written as a directory
        assert _digests(s.read_many(order)) == _digests(images[i] for i in order)


def test_sharded_tar_dataset_as_a_new_user(tmp_path, s3):
    """Acceptance: a fresh interpreter with only AWS_ENDPOINT_URL and the two credential variables set."""
    path, images, labels = _sharded(tmp_path, "tar", "png", mixed=True)
    url = s3.upload(path, "tars")
    remote_view = _fingerprint_as_new_user(tmp_path, s3, url)
    assert remote_view == _fingerprint(str(path))
    assert remote_view["all"] == _digests(images) and remote_view["labels"] == labels.tolist()


def _png_folder(root, n: int = 34):
    """A folder of real PNG files (Pillow-encoded) in class sub-folders: RGB, RGBA, gray 8/16-bit, mixed sizes."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for i in range(n):
        folder = root / ("cats", "dogs")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        h, w = 20 + i % 5, 24 + i % 3
        array = [  # Pillow picks RGB, RGBA, L and I;16
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            rng.integers(0, 256, (h, w, 4), dtype=np.uint8),
            rng.integers(0, 256, (h, w), dtype=np.uint8),
            rng.integers(0, 65536, (h, w), dtype=np.uint16),
        ][i % 4]
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return root


def test_convert_folder_of_pngs_then_read_sharded_zarr_from_s3(tmp_path, s3):
    """End to end as in the README: convert photos/ to a sharded zarr dataset, upload, read the URL."""
    photos = _png_folder(tmp_path / "photos")
    ds = tmp_path / "ds"
    assert main(["convert", str(photos), str(ds), "--backend", "zarr", "--images-per-shard", "10", "-q"]) == 0
    url = s3.upload(ds, "photos-ds")
    local = _fingerprint(str(ds))
    assert local["shards"] == 4 and local["images"] == 34
    assert _fingerprint_as_new_user(tmp_path, s3, url) == local
    info = _cli_as_new_user(tmp_path, s3, "info", url, "--json")
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert (described["backend"], described["images"], described["shards"]) == ("zarr", 34, 4)
    assert described["disk"]["files"] == len(s3.fs.find(s3.key(url)))
    checked = _cli_as_new_user(tmp_path, s3, "verify", url, "-q")
    assert checked.returncode == 0 and "ok: 34 images checked" in checked.stdout, checked.stdout + checked.stderr


def _edit_manifest(s3, url: str, change) -> bytes:
    """Apply ``change`` to the uploaded manifest; the original bytes."""
    key = s3.key(url, sharded.MANIFEST)
    original = s3.fs.cat_file(key)
    manifest = json.loads(original)
    change(manifest)
    s3.fs.pipe_file(key, json.dumps(manifest).encode())
    return original


def _read_everything(url: str) -> None:
    with imgbench.open(url) as s:
        s.read_many()
        s.labels  # noqa: B018


def test_tampered_remote_manifest_is_corrupt_store_error(tmp_path, s3, monkeypatch):
    path, images, _ = _sharded(tmp_path, "zarr")
    url = s3.upload(path, "ds")
    (tmp_path / "other").mkdir()
    s3.upload(_sharded(tmp_path / "other", "zarr", name="victim")[0], "victim")  # what '..' would reach
    cases = [
        (lambda m: m["shards"][1].update(name="../victim"), "plain name"),
        (lambda m: m["shards"][1].update(name="../victim/shard-00000.zarr"), "plain name"),
        (lambda m: m["shards"][1].update(name="/victim"), "plain name"),
        (lambda m: m["shards"][1].update(name=".."), "plain name"),
        (lambda m: m.update(count=m["count"] + 1), "add up"),  # lying total
        (lambda m: [m["shards"][0].update(count=6), m["shards"][1].update(count=8)], "holds 7 images"),  # lying shards
        (lambda m: m["shards"][3].update(checksums="0" * 16), "checksums do not match"),
        (lambda m: m["shards"][3].update(labels="0" * 16), "labels do not match"),
        (lambda m: m.update(backend="tar", compression="none"), "not a tar store"),
        (lambda m: m.update(version=99), "upgrade"),
    ]
    for change, match in cases:
        original = _edit_manifest(s3, url, change)
        with pytest.raises(imgbench.CorruptStoreError, match=match):
            _read_everything(url)
        s3.fs.pipe_file(s3.key(url, sharded.MANIFEST), original)
    key = s3.key(url, sharded.MANIFEST)
    s3.fs.pipe_file(key, b"{not json")
    with pytest.raises(imgbench.CorruptStoreError, match="not valid JSON"):
        imgbench.open(url)
    s3.fs.pipe_file(key, original)
    with monkeypatch.context() as patched, pytest.raises(imgbench.CorruptStoreError, match="more than any manifest"):
        patched.setattr(sharded_manifest, "MAX_MANIFEST_BYTES", 64)
        imgbench.open(url)
    with imgbench.open(url, verify=True) as s:  # restored: reads again
        assert _digests(s.read_many()) == _digests(images)


def test_missing_shard_objects_are_corrupt_store_errors(tmp_path, s3):
    path, images, _ = _sharded(tmp_path, "zarr")
    url = s3.upload(path, "ds")
    s3.fs.rm(s3.key(url, "shard-00002.zarr"), recursive=True)  # a whole shard gone
    with imgbench.open(url) as s:  # opening reads the manifest only
        with pytest.raises(imgbench.CorruptStoreError, match="shard-00002.zarr named by the manifest is missing"):
            s[14]
        assert _same(s[13], images[13]) and _same(s[21], images[21])  # the other shards still read
    report = verify(url)
    assert sorted(report.damaged) == list(range(14, 21))

    tars, timages, _ = _sharded(tmp_path, "tar", "none", name="tars")
    turl = s3.upload(tars, "tars")
    s3.fs.rm(s3.key(turl, "shard-00001/shard-000000.tar"))  # one object inside a shard
    with imgbench.open(turl) as s:
        with pytest.raises(imgbench.CorruptStoreError, match="missing"):
            s.read_many([0, 8])
        assert _same(s[0], timages[0])
    s3.fs.rm(s3.key(turl, "shard-00003/imgbench-tar.index"))
    with imgbench.open(turl) as s, pytest.raises(imgbench.CorruptStoreError, match="shard-00003.*missing"):
        s.labels  # noqa: B018


def test_unreachable_server_mid_read_is_not_damage(tmp_path, s3, monkeypatch):
    path, images, _ = _sharded(tmp_path, "tar", "none")
    url = s3.upload(path, "ds")
    with imgbench.open(url) as s:
        assert _same(s[0], images[0])
        endpoint = f"http://127.0.0.1:{_closed_port()}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # the next shard is opened against a dead server
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        with pytest.raises(remote.RemoteAccessError, match="cannot reach") as info:
            s[20]
        assert not isinstance(info.value, imgbench.CorruptStoreError) and endpoint in str(info.value)


@pytest.mark.parametrize("backend", ["lmdb", "npy", "disk"])
def test_sharded_dataset_of_local_only_backend_says_so(tmp_path, s3, backend, capsys):
    path, _, _ = _sharded(tmp_path, backend, "none" if backend != "lmdb" else None)
    url = s3.upload(path, "ds")
    with pytest.raises(imgbench.UnsupportedError,
                       match=rf"sharded dataset of {backend} shards, and {backend} stores cannot be read from an "
                             "object store: .*local"):
        imgbench.open(url)
    assert main(["verify", url]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{backend} stores cannot be read" in err and len(err.splitlines()) == 1


def test_writing_a_sharded_dataset_to_a_url_is_refused(tmp_path, s3):
    path, _, _ = _sharded(tmp_path, "zarr")
    url = s3.upload(path, "ds")
    before = s3.fs.find(s3.bucket)
    for mode in ("w", "x", "a"):
        with pytest.raises(imgbench.UnsupportedError, match="read-only.*upload"):
            imgbench.open(url, mode, backend="zarr", images_per_shard=7)
        with pytest.raises(imgbench.UnsupportedError, match="read-only"):
            imgbench.open(f"s3://{s3.bucket}/new", mode, backend="zarr", images_per_shard=7)
    with pytest.raises(imgbench.UnsupportedError, match="drop them to read"):
        imgbench.open(url, images_per_shard=7)
    with pytest.raises(imgbench.UnsupportedError, match="sharded dataset of zarr stores, not tar"):
        imgbench.open(url, backend="tar")
    s3.fs.invalidate_cache()
    assert s3.fs.find(s3.bucket) == before


def _read_shards_pickled(blob: bytes) -> bytes:
    store = pickle.loads(blob)
    return store.read_many([20, 3, 27]).tobytes() + store.labels.tobytes()


def test_sharded_remote_reader_in_spawned_and_forked_workers(tmp_path, s3, monkeypatch):
    path, images, labels = _sharded(tmp_path, "zarr", "zstd")
    url = s3.upload(path, "ds")
    _aws_env(monkeypatch, None)  # only storage_options say where and who: they must travel with the pickle
    opts = {"endpoint_url": s3.endpoint, "key": KEY, "secret": SECRET}
    want = np.stack([images[20], images[3], images[27]]).tobytes() + labels.astype(np.int64).tobytes()
    with imgbench.open(url, storage_options=opts, verify=True) as s:
        assert _same(s[0], images[0]) and len(s._open) == 1  # the parent has a shard open before forking
        blob = pickle.dumps(s)
        with mp.get_context("spawn").Pool(2) as pool:
            assert pool.map(_read_shards_pickled, [blob] * 2) == [want] * 2
        assert _forked_child_reads(s) == np.stack([images[5], images[1]]).tobytes()
        assert _same(s[27], images[27])  # the parent's shards still read


def test_cli_info_and_verify_on_a_remote_sharded_dataset(tmp_path, s3, capsys):
    path, images, _ = _sharded(tmp_path, "tar", "png")
    url = s3.upload(path, "ds")
    assert main(["info", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["backend"], info["compression"], info["images"], info["shards"]) == ("tar", "png", 30, 5)
    assert info["path"] == url and info["labelled"] and info["disk"]["files"] == len(s3.fs.find(s3.key(url)))
    assert main(["verify", url, "-q"]) == 0
    assert "ok: 30 images checked" in capsys.readouterr().out
    data = bytearray(s3.fs.cat_file(s3.key(url, "shard-00001/shard-000000.tar")))
    data[512 + 100] ^= 0xFF  # inside the first PNG member of shard 1: image 7 of the dataset
    s3.fs.pipe_file(s3.key(url, "shard-00001/shard-000000.tar"), bytes(data))
    assert main(["verify", url, "-q"]) == 1
    out = capsys.readouterr().out
    assert "damaged image 7:" in out and "1 of 30 images damaged" in out
