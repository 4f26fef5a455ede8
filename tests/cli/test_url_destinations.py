"""A destination that is a URL is a URL (issue 15): every command that writes refuses it in one line, before
any work, instead of writing a local folder named ``s3:/bucket/x`` and reporting success."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import imgbench
from imgbench.adapters.convert import convert
from imgbench.cli import main

COMMANDS = {
    "convert": ["convert", "{src}", "s3://bucket/x", "--backend", "zarr"],
    "convert sharded": ["convert", "{src}", "s3://bucket/x", "--backend", "zarr", "--shards", "2"],
    "compare --out": ["compare", "--out", "s3://bucket/report", "--quick"],
    "compare --workdir": ["compare", "--workdir", "s3://bucket/work", "--quick"],
    "demo": ["demo", "--out", "s3://bucket/demo", "--count", "5"],
    "dashboard": ["dashboard", "--out", "s3://bucket/dash"],
    "png-levels": ["png-levels", "--out", "gs://bucket/levels", "--quick"],
}


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(src / f"{i}.png")
    return src


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_url_destination_is_refused_in_one_line_and_nothing_is_written(name, photos, tmp_path, monkeypatch,
                                                                          capsys):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.format(src=photos) for a in COMMANDS[name]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a URL" in err and "://bucket/" in err, err
    assert list(work.iterdir()) == []  # no ./s3:/bucket/x


def test_the_library_refuses_it_too(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(imgbench.UnsupportedError, match="is a URL"):
        convert(photos, "s3://bucket/x", backend="lmdb")
    assert not (tmp_path / "s3:").exists()


def test_file_urls_are_local_paths(photos, tmp_path):
    dst = tmp_path / "x.lmdb"
    assert convert(photos, f"file://{dst}").images == 3
    with imgbench.open(dst) as store:
        assert len(store) == 3
