"""What reading a source folder may cost is bounded (issue 20, items 3, 7 and 9).

- Only regular files are opened: a FIFO (named ``pipe.png``, or ``README`` which the DICOM
  sniffing opens) used to hang ``convert`` and ``compare --source`` forever, and a symlink
  ``zero.png -> /dev/zero`` read until memory ran out. Now they, devices, sockets and broken
  links are skipped, each with a counted reason.
- A small PNG declaring 20000x20000 took 1.2 GB to decode, a multi-page TIFF was decoded whole
  into a list, and the ``compare --source`` budget was checked only between files. Now each
  image's declared size is checked before decoding (``--max-image-pixels``, default Pillow's
  ``PIL.Image.MAX_IMAGE_PIXELS``), pages are decoded one at a time, and the budget is checked
  per page.
- tifffile's log records no longer print before the one-line error.

The CLI runs in a fresh interpreter under RLIMIT_AS = 4 GB with a generous 60 s bound on what
used to hang; its peak RSS is the child's own VmHWM.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imgbench import cli
from imgbench.adapters import source_limits, sources

REPO = Path(__file__).resolve().parents[2]
#: what the child may take in all (the issue's outside check runs under the same limit)
MEMORY = 4 << 30
# The console script's entry, under RLIMIT_AS = MEMORY set before anything is imported.
# Its peak RSS is its own VmHWM, written at exit to $IMGBENCH_TEST_HWM: ru_maxrss from wait4 would also
# count the pytest worker it was forked from (Linux keeps maxrss across fork and exec).
CLI = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({MEMORY}, {MEMORY}))\n"
       "try:\n    from imgbench.cli import run; sys.argv[0] = 'imgbench'; run()\n"
       "finally:\n    open(os.environ['IMGBENCH_TEST_HWM'], 'w').write(open('/proc/self/status').read())")
#: peak RSS a child reading a bomb or a big multi-page TIFF must stay under
RSS = 300 << 20
#: bound on what used to hang forever; a finished run takes seconds
HANG = 60.0
COMPARE = ("--quick", "--backends", "npy", "--parallel-workers", "0", "-q")


@dataclass
class Run:
    rc: int
    out: str
    err: str
    maxrss: int  # bytes


def run_cli(*args: object) -> Run:
    """``imgbench ARGS`` in a fresh interpreter under RLIMIT_AS = MEMORY; fails the test if it outlives HANG."""
    hwm = tempfile.NamedTemporaryFile(delete=False)
    hwm.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "IMGBENCH_TEST_HWM": hwm.name}

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", CLI, *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env,
                                cwd=tempfile.gettempdir())  # PYTHONPATH, not the cwd, picks imgbench
        deadline = time.monotonic() + HANG
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                pytest.fail(f"imgbench {' '.join(map(str, args))} still running after {HANG} s: it hangs")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        status_text = Path(hwm.name).read_text()
        os.unlink(hwm.name)
        peak = next(int(line.split()[1]) for line in status_text.splitlines() if line.startswith("VmHWM:"))
        return Run(proc.returncode, out.read().decode(), err.read().decode(), peak * 1024)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(image))


def png_bomb(path: Path, side: int = 20000) -> None:
    """A valid 8-bit gray PNG of side x side zeros, compressed to ~1.7 MB (the issue's was 389 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(1)
    row = bytes(side + 1)  # filter byte + pixels
    idat = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def hostile_folder(root: Path) -> dict[str, int]:
    """One good PNG among things that are not regular files; returns the expected skip counts."""
    write_png(root / "ok.png", np.full((8, 8), 7, np.uint8))
    os.mkfifo(root / "pipe.png")
    os.mkfifo(root / "README")  # no suffix: the DICOM sniffing opens it
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "null.tif").symlink_to("/dev/null")
    (root / "gone.jpg").symlink_to(root / "nowhere")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.png"))
    sock.close()
    expected = {
        "not a regular file (a FIFO)": 2,
        "not a regular file (a character device)": 2,
        "not a regular file (a socket)": 1,
        "broken symbolic link": 1,
    }
    block = next((p for p in sorted(Path("/dev").glob("loop*")) if p.is_block_device()), None)
    if block is not None:
        (root / "disk.dcm").symlink_to(block)
        expected["not a regular file (a block device)"] = 1
    return expected


@pytest.fixture(scope="module")
def bomb_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bomb")
    png_bomb(root / "bomb.png")
    write_png(root / "ok.png", np.full((8, 8), 3, np.uint8))
    return root


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    """40 pages of 4096x4096 uint8 (670 MB decoded whole; 16 MiB a page) in a 30 KB TIFF."""
    root = tmp_path_factory.mktemp("stack")
    page = np.zeros((4096, 4096), np.uint8)
    with tifffile.TiffWriter(root / "stack.tif") as tif:
        for _ in range(40):
            tif.write(page, compression="zstd", compressionargs={"level": 1}, rowsperstrip=4096)
    return root


def warnings_of(err: str) -> dict[str, int]:
    got = {}
    for line in err.splitlines():
        prefix, _, reason = line.partition(" file(s): ")
        assert prefix.startswith("warning: skipped "), err
        got[reason] = int(prefix.removeprefix("warning: skipped "))
    return got


def notes_of(out: Path) -> list[str]:
    return json.loads((out / "results.json").read_text())["notes"]


# ----------------------------------------------------------------- item 3: regular files only
def test_convert_skips_fifos_devices_sockets_and_broken_links(tmp_path):
    expected = hostile_folder(tmp_path / "src")
    done = run_cli("convert", tmp_path / "src", tmp_path / "out.lmdb", "-q")
    assert done.rc == 0, done.err
    assert done.out.strip() == f"wrote 1 images to {tmp_path / 'out.lmdb'} (lmdb, none)"
    assert warnings_of(done.err) == expected
    assert "Traceback" not in done.err


def test_sharded_convert_skips_them_too(tmp_path):
    expected = hostile_folder(tmp_path / "src")
    done = run_cli("convert", tmp_path / "src", tmp_path / "out", "--backend", "npy", "--bytes-per-shard", "1M", "-q")
    assert done.rc == 0, done.err
    assert warnings_of(done.err) == expected


def test_compare_source_skips_them_with_counted_notes(tmp_path):
    expected = hostile_folder(tmp_path / "src")
    done = run_cli("compare", "--source", tmp_path / "src", "--out", tmp_path / "report", *COMPARE)
    assert done.rc == 0, done.err
    assert "Traceback" not in done.err and done.err == ""
    notes = notes_of(tmp_path / "report")
    for reason, n in expected.items():
        assert f"src: skipped {n} file(s): {reason}" in notes, notes


def test_a_folder_of_only_such_files_is_a_one_line_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe.png")
    (src / "zero.png").symlink_to("/dev/zero")
    done = run_cli("convert", src, tmp_path / "out.lmdb", "-q")
    assert done.rc == 2
    assert done.err.splitlines() == [
        (f"imgbench: error: no usable images in {src}: 1 x not a regular file (a FIFO); "
         "1 x not a regular file (a character device)")
    ]
    assert not (tmp_path / "out.lmdb").exists()


def test_library_skips_what_it_need_not_open(tmp_path):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.png"))
    sock.close()
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere")
    with pytest.raises(sources.SkipFile, match=r"^not a regular file \(a socket\)$"):
        sources.read_file(tmp_path / "s.png")
    with pytest.raises(sources.SkipFile, match="^broken symbolic link$"):
        sources.read_file(tmp_path / "gone.png")


def test_whole_file_reads_are_bounded(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 1000)
    with open(path, "rb") as f:
        assert source_limits.read_bounded(f, 1000) == b"x" * 1000
    with open(path, "rb") as f, pytest.raises(sources.SkipFile, match="1,000 bytes, above the 999"):
        source_limits.read_bounded(f, 999)
    # a PNG is read whole: at most 8 bytes per allowed pixel, and never less than 1 GiB
    assert source_limits.max_file_bytes(source_limits.pixel_limit()) == 1 << 30
    assert source_limits.max_file_bytes(10**9) == 8 * 10**9


# ----------------------------------------------------------------- item 7: declared sizes, pages, budget
def test_png_bomb_is_skipped_before_decoding_in_bounded_memory(tmp_path, bomb_dir):
    done = run_cli("convert", bomb_dir, tmp_path / "out.lmdb", "-q")
    assert done.rc == 0, done.err
    assert "wrote 1 images" in done.out
    assert warnings_of(done.err) == {
        "PNG declares 20000x20000 = 400,000,000 pixels, above the limit of 89,478,485 (a decompression bomb?); "
        "raise it with --max-image-pixels N (max_image_pixels=N)": 1
    }
    assert done.maxrss < RSS, f"peak RSS {done.maxrss >> 20} MiB"


def test_png_bomb_in_compare_source_is_skipped_in_bounded_memory(tmp_path, bomb_dir):
    done = run_cli("compare", "--source", bomb_dir, "--out", tmp_path / "report", *COMPARE)
    assert done.rc == 0, done.err
    assert any("PNG declares 20000x20000" in note for note in notes_of(tmp_path / "report"))
    assert done.maxrss < RSS, f"peak RSS {done.maxrss >> 20} MiB"


def test_png_bomb_alone_is_a_one_line_error(tmp_path, bomb_dir):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bomb.png").symlink_to(bomb_dir / "bomb.png")
    done = run_cli("convert", src, tmp_path / "out.lmdb", "-q", "--max-image-pixels", "1000000")
    assert done.rc == 2
    assert done.err.splitlines() == [
        (f"imgbench: error: no usable images in {src}: 1 x PNG declares 20000x20000 = 400,000,000 pixels, above "
         "the limit of 1,000,000 (a decompression bomb?); raise it with --max-image-pixels N (max_image_pixels=N)")
    ]
    assert done.maxrss < RSS


def test_multipage_tiff_is_converted_one_page_at_a_time(tmp_path, stack_dir):
    done = run_cli("convert", stack_dir, tmp_path / "out.lmdb", "--compression", "zstd", "-q")
    assert done.rc == 0, done.err
    assert "wrote 40 images" in done.out and done.err == ""
    assert done.maxrss < RSS, f"peak RSS {done.maxrss >> 20} MiB (the whole file is 640 MiB of pixels)"


def test_compare_source_budget_is_checked_per_page(tmp_path, stack_dir):
    done = run_cli("compare", "--source", stack_dir, "--out", tmp_path / "report", *COMPARE)
    assert done.rc == 0, done.err
    assert any("read the first 1 images of the folder (a 8 MiB budget)" in n for n in notes_of(tmp_path / "report"))
    assert done.maxrss < RSS, f"peak RSS {done.maxrss >> 20} MiB"


def test_load_stops_inside_a_multipage_file(tmp_path):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for k in range(5):
            tif.write(np.full((10, 10), k, np.uint8))
    loaded = sources.load(tmp_path, max_bytes=250)
    assert [int(im[0, 0]) for im in loaded.images] == [0, 1] and loaded.truncated


def test_pages_are_known_before_they_are_decoded(tmp_path):
    stack = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for page in stack:
            tif.write(page)
    pages = sources.iter_pages(tmp_path / "pages.tif")
    first = next(pages)
    assert (first.shape, first.dtype, first.nbytes) == ((4, 5), np.uint16, 40)
    np.testing.assert_array_equal(first.decode(), stack[0])
    pages.close()  # the other pages are never decoded, and the file is closed


KINDS = ("png", "tiff", "jpeg")


def _write(path: Path, kind: str, image: np.ndarray) -> None:
    if kind == "png":
        write_png(path, image)
    elif kind == "tiff":
        tifffile.imwrite(path, image)
    else:
        Image.fromarray(image).save(path, quality=95)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), height=st.integers(1, 40), width=st.integers(1, 40), limit=st.integers(1, 1600))
def test_an_image_is_refused_exactly_when_it_declares_more_pixels_than_the_limit(kind, height, width, limit):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"a.{'tif' if kind == 'tiff' else kind}"
        _write(path, kind, np.zeros((height, width), np.uint8))
        if height * width > limit:
            with pytest.raises(sources.SkipFile, match=f"declares {width}x{height} = {height * width:,} pixels"):
                sources.read_file(path, max_image_pixels=limit)
        else:
            (image,) = sources.read_file(path, max_image_pixels=limit)
            assert image.shape == (height, width)


def test_the_default_limit_is_pillows(tmp_path, monkeypatch):
    assert source_limits.pixel_limit() == Image.MAX_IMAGE_PIXELS == 89_478_485
    write_png(tmp_path / "a.png", np.zeros((10, 10), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 99)
    with pytest.raises(sources.SkipFile, match="above the limit of 99"):
        sources.read_file(tmp_path / "a.png")
    assert len(sources.read_file(tmp_path / "a.png", max_image_pixels=100)) == 1


@pytest.mark.parametrize("command", ["convert", "compare"])
def test_a_bad_limit_is_a_one_line_error(tmp_path, capsys, command):
    write_png(tmp_path / "src" / "a.png", np.zeros((4, 4), np.uint8))
    argv = (["convert", str(tmp_path / "src"), str(tmp_path / "o.lmdb")] if command == "convert"
            else ["compare", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "r"), *COMPARE])
    assert cli.main([*argv, "--max-image-pixels", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "imgbench: error: max_image_pixels must be a positive number of pixels, not 0"
    ]
    assert not (tmp_path / "o.lmdb").exists()


# ----------------------------------------------------------------- item 9: library warnings off stderr
@pytest.fixture
def damaged_tiff(tmp_path) -> Path:
    tifffile.imwrite(tmp_path / "whole.tif", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64),
                     compression="zlib", description="x" * 64)
    src = tmp_path / "src"
    src.mkdir()
    (src / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:200])
    return src


def test_a_damaged_tiff_gives_exactly_one_line_on_stderr(tmp_path, damaged_tiff):
    done = run_cli("convert", damaged_tiff, tmp_path / "out.lmdb", "-q")
    assert done.rc == 2
    (line,) = done.err.splitlines()  # tifffile logged 4 damaged tags: none of them printed
    assert line.startswith(f"imgbench: error: cannot read TIFF {damaged_tiff / 'cut.tif'}: ")
    assert "(tifffile: " in line and "invalid value offset" in line  # its first record explains the damage


def test_tifffile_records_go_to_the_log(damaged_tiff, caplog, capsys):
    with caplog.at_level("INFO", logger="imgbench.sources"), pytest.raises(sources.SourceError):
        sources.read_file(damaged_tiff / "cut.tif")
    assert any(r.name == "imgbench.sources" and "tifffile:" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr().err == ""


def test_tifffile_outside_imgbench_still_prints_as_before():
    # Python prints a library's warnings on stderr when no handler is configured (pytest's own
    # handlers would hide that here, hence a fresh interpreter); imgbench's handler keeps it so.
    code = ("import logging; from imgbench.adapters import source_limits; source_limits._install(); "
            "logging.getLogger('tifffile').warning('the application reads a TIFF of its own')")
    hwm = tempfile.NamedTemporaryFile(delete=False)
    hwm.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "IMGBENCH_TEST_HWM": hwm.name}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG, env=env, check=False,
                          cwd=tempfile.gettempdir())
    assert done.stderr.splitlines() == ["the application reads a TIFF of its own"]
