"""``imgbench convert``: folder or store -> any backend, exact, labelled, with one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import imagecodecs
import numpy as np
import pytest
import tifffile

import imgbench
from imgbench.adapters import convert as conv
from imgbench.adapters import sources
from imgbench.cli import main

RNG = np.random.default_rng(99)


def rand(shape, dtype):
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@pytest.fixture
def folder(tmp_path):
    """Lossless images of mixed sizes, depths and channels in two class folders."""
    root = tmp_path / "images"
    images = {
        "cats/a.png": rand((12, 10, 3), np.uint16),
        "cats/b.png": rand((7, 9), np.uint8),
        "dogs/c.tif": rand((20, 5), np.uint16),
        "dogs/d.tiff": rand((6, 6, 3), np.uint8),
        "dogs/e.png": rand((5, 8, 4), np.uint8),
    }
    for rel, image in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".png"):
            path.write_bytes(imagecodecs.png_encode(image))
        else:
            tifffile.imwrite(path, image, photometric="rgb" if image.ndim == 3 else "minisblack")
    (root / "dogs" / "README.txt").write_text("not an image")
    return root, [images[k] for k in sorted(images)], [0, 0, 1, 1, 1]


@pytest.mark.parametrize("backend", imgbench.backends())
def test_folder_converts_bit_exactly_with_labels(folder, tmp_path, backend):
    root, want, labels = folder
    dst = tmp_path / f"out-{backend}"
    done = conv.convert(root, dst, backend=backend)
    assert done.images == len(want) and done.classes == ["cats", "dogs"] and done.ignored == 1
    with imgbench.open(dst) as store:
        assert store.backend == backend and len(store) == len(want)
        for k, image in enumerate(want):
            got = store[k]
            assert got.dtype == image.dtype and got.shape == image.shape
            np.testing.assert_array_equal(got, image)
        assert store.labels.tolist() == labels
        assert store.attrs["classes"] == ["cats", "dogs"]


def test_store_to_store_keeps_images_labels_attrs(folder, tmp_path):
    root, want, labels = folder
    first = tmp_path / "a.h5"
    conv.convert(root, first)
    second = tmp_path / "b.lmdb"
    done = conv.convert(first, second, compression="zstd")
    assert done.images == len(want) and done.compression == "zstd"
    with imgbench.open(second) as store:
        assert store.compression == "zstd"
        assert all(np.array_equal(store[k], image) and store[k].dtype == image.dtype for k, image in enumerate(want))
        assert store.labels.tolist() == labels
        assert store.attrs["classes"] == ["cats", "dogs"]
        assert "hdf5" in store.attrs["converted_from"]


def test_progress_callbacks_count_files(folder, tmp_path):
    root, want, _ = folder
    seen = {"total": None, "done": 0}
    conv.convert(root, tmp_path / "p.lmdb", total=lambda n: seen.update(total=n),
                 progress=lambda k: seen.update(done=seen["done"] + k))
    assert seen == {"total": len(want), "done": len(want)}


def test_cli_convert_then_verify_round_trip(folder, tmp_path, capsys):
    root, want, _ = folder
    dst = tmp_path / "cli.lmdb"
    assert main(["convert", str(root), str(dst), "--compression", "png", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {len(want)} images, 2 classes" in out
    assert main(["verify", str(dst), "-q"]) == 0
    assert f"ok: {len(want)} images" in capsys.readouterr().out
    with imgbench.open(dst) as store:
        assert store.compression == "png"
        back = store.read_many()
    assert len(back) == len(want) and all(np.array_equal(a, b) for a, b in zip(back, want))


def test_damaged_image_aborts_and_leaves_no_store(folder, tmp_path, capsys):
    root, _, _ = folder
    (root / "dogs" / "f.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    dst = tmp_path / "x.lmdb"
    assert main(["convert", str(root), str(dst), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "f.png" in err and len(err.splitlines()) == 1
    assert not dst.exists()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["{tmp}/missing", "{tmp}/o.lmdb"], "no such folder or store"),
        (["{tmp}/empty", "{tmp}/o.lmdb"], "holds no images"),
        (["{tmp}/empty", "{tmp}/o.lmdb", "--backend", "nosuch"], "invalid choice|unknown backend"),
        (["{tmp}/one", "{tmp}/o.unknownsuffix"], "cannot tell the backend"),
        (["{tmp}/one", "{tmp}/o.lmdb", "--compression", "gzip"], "not supported by backend"),
        (["{tmp}/one", "{tmp}/one"], "same path"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, expect):
    import re

    (tmp_path / "empty").mkdir()
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.png").write_bytes(imagecodecs.png_encode(rand((4, 4), np.uint8)))
    argv = ["convert", *[a.format(tmp=tmp_path) for a in args], "-q"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects before main's handler
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert re.search(expect, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "o.lmdb").exists()


def test_existing_destination_needs_overwrite(folder, tmp_path, capsys):
    root, want, _ = folder
    dst = tmp_path / "d.h5"
    conv.convert(root, dst)
    assert main(["convert", str(root), str(dst), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(root), str(dst), "--overwrite", "-q"]) == 0


def test_console_script_prints_no_traceback(tmp_path):
    """The real entry point, in a fresh process, on a missing path."""
    proc = subprocess.run(
        [sys.executable, "-m", "imgbench.cli", "convert", str(tmp_path / "nope"), str(tmp_path / "o.lmdb")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("imgbench: error:") and len(proc.stderr.strip().splitlines()) == 1


def test_skipped_files_are_reported(tmp_path, capsys):
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.png").write_bytes(imagecodecs.png_encode(rand((4, 4), np.uint8)))
    tifffile.imwrite(root / "b.tif", np.zeros((3, 3), np.float64))
    assert main(["convert", str(root), str(tmp_path / "o.lmdb"), "-q"]) == 0
    captured = capsys.readouterr()
    assert "wrote 1 images" in captured.out
    assert "warning: skipped 1 file(s): pixel type float64" in captured.err
    assert sources.SUFFIXES[".tif"] == "tiff"
