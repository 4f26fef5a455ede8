"""The disk backend: one file per image (PNG or .npy) in a directory, labels, shapes, digests and attrs
in a small sidecar (imgbench.json). What only disk promises, and what its files get when damaged or hostile.

Generic behaviour (modes, checksums, crashes, fork/pickle, full disk, fuzzing) is covered for
every backend by ``tests/contract/``; this file looks inside the image files and the sidecar.
"""

from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path
import subprocess
import textwrap

import imagecodecs
import numpy as np
import pytest
from PIL import Image

import imgbench
from imgbench.adapters.integrity import verify
from imgbench.core import checksum
from imgbench.storage.disk import SIDECAR

from .. import scripts
from ..conftest import same, sample
from ..contract.backends import flip_bit
from ..contract.fuzzing import store_images
from . import hostile
from . import stores
from .stores import read_everything
from .hostile import assert_refused, probe

build_store = functools.partial(stores.build_store, backend="disk")


def sidecar(path) -> dict:
    return json.loads((path / SIDECAR).read_text())


def set_sidecar(path, meta: dict) -> None:
    (path / SIDECAR).write_text(json.dumps(meta))


def cli_verify(path) -> subprocess.CompletedProcess:
    return scripts.run_cli("verify", "-q", path, timeout=120)


# ------------------------------------------------------------------ layout: any viewer reads it
def test_disk_png_files_open_in_any_viewer(tmp_path):
    images = [sample((10, 12, 3), np.uint8), sample((10, 12), np.uint16), sample((5, 5, 4), np.uint8)]
    path = tmp_path / "pngs"
    with imgbench.open(path, "w", backend="disk") as s:
        s.extend(images, labels=[7, 8, 9])
    meta = json.loads((path / "imgbench.json").read_text())
    assert meta["image_labels"] == [7, 8, 9] and meta["count"] == 3
    assert meta["images"]["shapes"] == [[10, 12, 3], [10, 12], [5, 5, 4]]
    assert np.array_equal(np.asarray(Image.open(path / "00000000.png")), images[0])
    assert np.array_equal(np.asarray(Image.open(path / "00000001.png")), images[1])
    assert np.array_equal(np.asarray(Image.open(path / "00000002.png")), images[2])
    assert np.array_equal(imagecodecs.imread(path / "00000001.png"), images[1])

def test_disk_16bit_rgb_png_is_standard(tmp_path):
    image = sample((6, 7, 3), np.uint16)
    path = tmp_path / "rgb16"
    with imgbench.open(path, "w", backend="disk") as s:
        s.append(image)
    data = (path / "00000000.png").read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (7, 6, 16, 2)
    assert np.array_equal(imagecodecs.png_decode(data), image)

def test_disk_raw_files_are_plain_npy(tmp_path):
    image = sample((6, 7, 2), np.float32)
    path = tmp_path / "npys"
    with imgbench.open(path, "w", backend="disk", compression="none") as s:
        s.append(image)
    loaded = np.load(path / "00000000.npy", allow_pickle=False)
    assert loaded.tobytes() == image.tobytes() and loaded.shape == image.shape


# ------------------------------------------------------------------ damage
@pytest.mark.parametrize("compression", ["png", "none"])
def test_disk_damage(tmp_path, compression):
    path, images = build_store(tmp_path, compression)
    suffix = ".png" if compression == "png" else ".npy"
    victim = path / f"00000003{suffix}"
    # Truncated image file.
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with imgbench.open(path) as s:
        assert np.array_equal(s[2], images[2])
        with pytest.raises(imgbench.CorruptStoreError, match="image 3|raw image|npy"):
            s[3]
        with pytest.raises(imgbench.CorruptStoreError):
            s.read_many()
    # Missing file.
    victim.unlink()
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="missing"):
        s[3]
    # A file whose header claims other dimensions (a decompression bomb, say).
    other = sample((4000, 4000), np.uint8) if compression == "png" else sample((17, 16, 3), np.uint8)
    if compression == "png":
        victim.write_bytes(imagecodecs.png_encode(other))
    else:
        np.save(victim, other)
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s[3]

def test_disk_png_bit_flip_is_detected(tmp_path):
    path, _ = build_store(tmp_path, "png")
    victim = path / "00000005.png"
    flip_bit(victim, len(victim.read_bytes()) // 2)  # inside IDAT: PNG chunk CRCs catch it
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError):
        s[5]

@pytest.mark.parametrize(
    "sidecar",
    [
        b"{not json",
        b"[]",
        json.dumps({"format": "other"}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": -1}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": 3,
                    "labels": False, "images": {"shape": [10**9, 10**9, 3], "dtype": "|u1"}}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "png", "count": 3,
                    "labels": False, "images": {"shape": [2, 2], "dtype": "object"}}).encode(),
        json.dumps({"format": "imgbench", "version": 1, "backend": "disk", "compression": "gif", "count": 0,
                    "labels": False}).encode(),
    ],
)
def test_disk_bad_sidecar(tmp_path, sidecar):
    path, _ = build_store(tmp_path, "png")
    (path / "imgbench.json").write_bytes(sidecar)
    with pytest.raises(imgbench.CorruptStoreError):
        read_everything(path)

def test_huge_declared_shape_does_not_allocate(tmp_path):
    path, _ = build_store(tmp_path, "png", n=1)
    meta = json.loads((path / "imgbench.json").read_bytes())
    meta["images"] = {"shape": [100000, 100000, 4], "dtype": "<u2"}
    (path / "imgbench.json").write_text(json.dumps(meta))
    with imgbench.open(path) as s, pytest.raises(imgbench.CorruptStoreError, match="PNG"):
        s[0]  # the PNG header disagrees; 80 GB are never requested


@pytest.mark.parametrize("layout", ["ragged", "uniform"])
def test_disk_sidecar_with_a_damaged_key_is_corrupt(tmp_path, layout):
    path = tmp_path / "d"
    ims = store_images("png") if layout == "ragged" else store_images("png")[:8]
    with imgbench.open(path, "w", backend="disk") as s:
        s.extend(ims)
    meta = json.loads((path / "imgbench.json").read_text())
    key = "dtypes" if layout == "ragged" else "dtype"
    meta["images"]["dtxpes"] = meta["images"].pop(key)
    (path / "imgbench.json").write_text(json.dumps(meta))
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()


def test_damaged_npy_header_is_corrupt(tmp_path):
    path = tmp_path / "n"
    ims = store_images("none")[:8]
    with imgbench.open(path, "w", backend="disk", compression="none") as s:
        s.extend(ims)
    victim = path / "00000000.npy"
    data = bytearray(victim.read_bytes())
    at = data.index(b"'shape': (12, 10, 3)") + len(b"'shape': (12, 10, 3")
    assert data[at : at + 1] == b")"
    data[at] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(imgbench.CorruptStoreError):
        with imgbench.open(path) as s:
            s.read_many()


# ------------------------------------------------------------------ checksums in the sidecar
def photos(n: int, start: int = 0) -> np.ndarray:
    return np.stack([sample((16, 16, 3), np.uint8, seed=start + i) for i in range(n)])


def build_checksummed(path, compression, batch) -> None:
    with imgbench.open(path, "w", backend="disk", compression=compression) as s:
        s.extend(batch, labels=np.arange(len(batch)) * 2 + 1)


@pytest.mark.parametrize("compression", ["png", "none"])
def test_missing_or_short_checksums_are_corrupt(tmp_path, compression):
    path = tmp_path / "s"
    n = 5
    batch = photos(n)
    build_checksummed(path, compression, batch)
    good = sidecar(path)
    text = good["image_checksums"]
    damages = {
        "missing": lambda m: m.pop("image_checksums"),
        "short": lambda m: m.__setitem__("image_checksums", text[:-16]),
        "long": lambda m: m.__setitem__("image_checksums", text + "0" * 16),
        "not hex": lambda m: m.__setitem__("image_checksums", "zz" * 8 * n),
        "not a string": lambda m: m.__setitem__("image_checksums", [1] * n),
    }
    for what, damage in damages.items():
        meta = json.loads(json.dumps(good))
        damage(meta)
        set_sidecar(path, meta)
        with imgbench.open(path) as s:
            assert same(s.read_many(), batch), what  # the images themselves are fine
            with pytest.raises(imgbench.CorruptStoreError, match="checksum"):
                s.checksums
        with imgbench.open(path, verify=True) as s, pytest.raises(imgbench.CorruptStoreError):
            s[0]
        report = verify(path)
        assert not report.ok and report.problems and not report.damaged, what
        assert cli_verify(path).returncode == 1
        with pytest.raises(imgbench.CorruptStoreError, match="checksums"):
            imgbench.open(path, "a")  # never append to a store whose digests are damaged
    set_sidecar(path, good)
    assert verify(path).ok


@pytest.mark.parametrize("compression", ["png", "none"])
def test_store_written_without_checksums_reads_and_appends_without_them(tmp_path, compression):
    """A sidecar from before checksums (no "checksum", no "image_checksums") opens, reads, verifies, stays so."""
    path = tmp_path / "s"
    batch = photos(3)
    build_checksummed(path, compression, batch)
    meta = sidecar(path)
    del meta["checksum"]
    del meta["image_checksums"]
    set_sidecar(path, meta)
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), batch) and same(s[1], batch[1])
    report = verify(path)
    assert report.ok and not report.checksummed
    proc = cli_verify(path)
    assert proc.returncode == 0 and "no per-image checksums" in proc.stdout
    extra = photos(2, start=9)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[5, 6])
    meta = sidecar(path)
    assert "checksum" not in meta and "image_checksums" not in meta and meta["count"] == 5
    with imgbench.open(path, verify=True) as s:
        assert s.checksums is None and same(s.read_many(), np.concatenate([batch, extra]))
    assert verify(path).ok


KILLED_BEFORE_COMMIT = textwrap.dedent(
    """
    import os, sys, numpy as np, imgbench, imgbench.core.atomic
    s = imgbench.open(sys.argv[1], "a")
    s.extend(np.full((3, 16, 16, 3), 9, np.uint8), labels=np.zeros(3, int))
    imgbench.core.atomic.write_file = lambda *a, **k: os._exit(0)  # killed just before the commit record
    s.close()
    """
)


@pytest.mark.parametrize("compression", ["png", "none"])
def test_killed_appender_leaves_old_images_with_their_digests(tmp_path, compression):
    """Digests are committed with the images in the sidecar: a writer killed just before it adds neither."""
    path = tmp_path / "s"
    batch = photos(4)
    build_checksummed(path, compression, batch)
    labels = (np.arange(4) * 2 + 1).tolist()
    scripts.run(KILLED_BEFORE_COMMIT, path, check=True, timeout=120)
    with imgbench.open(path, verify=True) as s:
        assert len(s) == 4 and np.array_equal(s.checksums, checksum.digests(batch, labels))
        assert same(s.read_many(), batch) and s.labels.tolist() == labels
    extra = photos(2, start=40)
    with imgbench.open(path, "a") as s:
        s.extend(extra, labels=[1, 2])
    with imgbench.open(path, verify=True) as s:
        both = np.concatenate([batch, extra])
        assert np.array_equal(s.checksums, checksum.digests(both, [*labels, 1, 2])) and same(s.read_many(), both)
        assert s.labels.tolist() == [*labels, 1, 2]
    assert verify(path).ok


# ------------------------------------------------------------------ hostile stores (see hostile.py)
def _disk_png_bomb(tmp_path: Path) -> Path:
    path = hostile.build(tmp_path, "disk", "png")
    meta = json.loads((path / "imgbench.json").read_text())
    meta["images"] = {"shape": [*hostile.HUGE_PNG, 3], "dtype": "|u1"}
    (path / "imgbench.json").write_text(json.dumps(meta))
    (path / "00000000.png").write_bytes(hostile.lying_png(*hostile.HUGE_PNG))
    return path


def test_png_declaring_a_huge_image_is_refused_without_allocating(tmp_path):
    path = _disk_png_bomb(tmp_path)
    assert_refused(probe(path, "one:0"))
    assert_refused(probe(path, "bulk"))


@pytest.mark.parametrize("count", [10**9, 2**40])
def test_disk_sidecar_with_a_lying_count_is_refused_at_open(tmp_path, count):
    """Found from outside the repo: a uniform disk store sized its shape table by the sidecar's count (22 GiB)."""
    path = hostile.build(tmp_path, "disk", "none", labels=False)
    meta = json.loads((path / "imgbench.json").read_text())
    meta["count"] = count
    (path / "imgbench.json").write_text(json.dumps(meta))
    res = probe(path, "one:0")
    assert_refused(res)
    assert "missing" in res["message"]


@pytest.mark.parametrize("case", [c for c in hostile.SYMLINK_BUGS if c.startswith("disk")])
def test_store_files_symlinked_outside_the_store_are_not_followed(tmp_path, case):
    hostile.assert_not_followed(*hostile.symlinked(tmp_path, case))


@pytest.fixture(scope="module")
def special_results(tmp_path_factory) -> dict[str, dict]:
    """Every case that may block, probed at once: the hangs cost HANG_TIMEOUT once, not once each."""
    return hostile.probe_at_once(tmp_path_factory, [c for c in hostile.SPECIAL_BUGS if c.startswith("disk")])


@pytest.mark.parametrize("case", [c for c in hostile.SPECIAL_BUGS if c.startswith("disk")])
def test_fifos_and_devices_in_a_store_are_refused_without_blocking(special_results, case):
    assert_refused(special_results[case])


def test_special_files_that_are_already_refused(tmp_path):
    """Regression guard: a FIFO as the sidecar."""
    path = hostile.build(tmp_path, "disk")
    (path / "imgbench.json").unlink()
    os.mkfifo(path / "imgbench.json")
    assert_refused(probe(path, "all", timeout=20))
