"""Small defects of issue 14: each pinned by a test that failed before its fix."""

from __future__ import annotations

import numpy as np

import imgbench
from imgbench.cli import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgbench: error:") and len(err.splitlines()) == 1, err
    return err


def test_verify_on_a_folder_that_is_not_a_store_says_so_rc2(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.txt").write_text("hi")
    assert main(["info", str(folder)]) == 2
    _one_line_error(capsys)
    assert main(["verify", str(folder), "-q"]) == 2
    err = _one_line_error(capsys)
    assert "not an imgbench store" in err
    assert "store is damaged" not in capsys.readouterr().out


def test_verify_on_a_damaged_store_still_exits_1(tmp_path, capsys):
    path = tmp_path / "s"
    with imgbench.open(path, "w", backend="npy") as store:
        store.extend(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
    assert main(["verify", str(path), "-q"]) == 0
    capsys.readouterr()
    data = [p for p in path.rglob("*") if p.is_file() and p.stat().st_size >= 60]
    assert data, list(path.rglob("*"))
    for p in data:
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 0xFF
        p.write_bytes(bytes(raw))
    assert main(["verify", str(path), "-q"]) == 1
    assert "damaged" in capsys.readouterr().out

